//! Reading score files: CSV with a header naming the columns `label`, `score` and optionally a
//! video column, in any order (other columns are ignored).
//!
//! * `label`: 1 = fake / attack, 0 = real / bona fide (also accepted: any number equal to 0 or 1,
//!   such as `1.0`, as pandas writes float columns);
//! * `score`: a finite number, higher = more likely fake (P(fake) for the thresholded metrics);
//! * video column (default name `video`): a non-empty id shared by the frames of one video.
//!
//! Fields are trimmed of surrounding whitespace. Errors name the CSV line (the header is line 1).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{EvalError, Position};
use crate::input::ScoreSet;
use crate::metrics::{Metrics, evaluate};

/// Default name of the video-id column.
pub const DEFAULT_VIDEO_COLUMN: &str = "video";

fn column(header: &csv::StringRecord, name: &str) -> Result<Option<usize>, EvalError> {
    let mut hits = header.iter().enumerate().filter(|(_, h)| *h == name);
    let first = hits.next().map(|(i, _)| i);
    if hits.next().is_some() {
        return Err(EvalError::DuplicateColumn {
            column: name.to_owned(),
        });
    }
    Ok(first)
}

fn required(header: &csv::StringRecord, name: &str) -> Result<usize, EvalError> {
    column(header, name)?.ok_or_else(|| EvalError::MissingColumn {
        column: name.to_owned(),
        header: header.iter().collect::<Vec<_>>().join(","),
    })
}

fn parse_label(text: &str, line: u64) -> Result<u8, EvalError> {
    match text.parse::<f64>() {
        Ok(0.0) => Ok(0), // also `-0`, `0.0`, `0e0`
        Ok(1.0) => Ok(1),
        _ => Err(EvalError::InvalidLabel {
            at: Position::Line(line),
            value: text.to_owned(),
        }),
    }
}

fn parse_score(text: &str, line: u64) -> Result<f64, EvalError> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(EvalError::NonFiniteScore {
            at: Position::Line(line),
            value: text.to_owned(),
        }),
    }
}

/// Reads a score CSV from any reader.
///
/// `video_column`: `None` reads the `video` column if the header has one (frame-level only
/// otherwise); `Some(name)` requires a column called `name`.
pub fn read_scores<R: Read>(reader: R, video_column: Option<&str>) -> Result<ScoreSet, EvalError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = rdr.headers()?.clone();
    let label_col = required(&header, "label")?;
    let score_col = required(&header, "score")?;
    let video_col = match video_column {
        Some(name) => Some(required(&header, name)?),
        None => column(&header, DEFAULT_VIDEO_COLUMN)?,
    };

    let mut labels = Vec::new();
    let mut scores = Vec::new();
    let mut videos = Vec::new();
    let mut lines = Vec::new();
    for record in rdr.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        // The csv reader rejects ragged rows, so the columns found in the header exist.
        labels.push(parse_label(&record[label_col], line)?);
        scores.push(parse_score(&record[score_col], line)?);
        if let Some(c) = video_col {
            videos.push(record[c].to_owned());
        }
        lines.push(line);
    }
    let set = ScoreSet::new(labels, scores)?;
    match video_col {
        Some(_) => set.with_videos_at(&videos, |i| Position::Line(lines[i])),
        None => Ok(set),
    }
}

/// Reads a score CSV file; see [`read_scores`] for the format and `video_column`.
pub fn read_scores_csv(
    path: impl AsRef<Path>,
    video_column: Option<&str>,
) -> Result<ScoreSet, EvalError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| EvalError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_scores(file, video_column)
}

/// Reads a score CSV file and computes its [`Metrics`] (video metrics when a video column is
/// present): the whole of `fsvfm eval-scores`.
pub fn evaluate_csv(
    path: impl AsRef<Path>,
    video_column: Option<&str>,
) -> Result<Metrics, EvalError> {
    evaluate(&read_scores_csv(path, video_column)?)
}

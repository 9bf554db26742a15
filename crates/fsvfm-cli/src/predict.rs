//! `fsvfm predict`: P(fake) for every face in new images and videos.
//!
//! Each input is decoded (video: K frames at `linspace`), faces are detected and cropped exactly as
//! `fsvfm prepare` does for training (BlazeFace, dlib-calibrated FSFM 1.3× box, bicubic to the
//! model's size), normalised with the checkpoint's pre-training mean/std and scored in batches
//! that span files. One JSON line per face (`file, frame, face_index, box, p_fake`), one per input
//! without a usable face (`error`), and one per video with the mean over its faces (the papers'
//! video-level score). `--heatmap DIR` writes the last block's class-token attention over each
//! crop (Fig. 5 style).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use fsvfm::Detector;
use fsvfm_faces::prepare::{Input, list_inputs};
use fsvfm_faces::video::is_video_file;
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

/// Arguments of `fsvfm predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Images, videos, folders (searched recursively) or list files (.txt).
    #[arg(required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The detector.
    #[command(flatten)]
    ck: crate::eval::CheckpointArgs,
    /// Frames per video (uniform, np.linspace).
    #[arg(value_parser = crate::flags::FRAMES, long, default_value_t = 32)]
    frames: usize,
    /// Score every face (default: the largest face of each image or frame).
    #[arg(long)]
    all_faces: bool,
    /// Faces per forward pass.
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 16)]
    batch_size: usize,
    /// `jsonl` (one object per line) or `table`.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write results here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The inputs are face crops already (as `prepare` writes them, and as `eval` scores them):
    /// no detection, each image resized to the model's input as `eval` does. Images only.
    #[arg(long, conflicts_with = "all_faces")]
    crops: bool,
    /// Write attention heat maps (crop + last-block class-token attention) into this folder.
    #[arg(long)]
    heatmap: Option<PathBuf>,
    /// Folder holding the converted face models (default: $FSVFM_HOME/models).
    #[arg(long)]
    models: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Format {
    Jsonl,
    Table,
}

/// One output record.
#[derive(Serialize, Debug, Clone)]
struct Record {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    face_index: Option<usize>,
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    bbox: Option<[f32; 4]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_fake: Option<f64>,
    /// `real`, `suspect` or `fake` from the checkpoint's calibration (0.5 when uncalibrated).
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<fsvfm::Verdict>,
    /// Video summary line: frames with a scored face.
    #[serde(skip_serializing_if = "Option::is_none")]
    video_frames: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Record {
    fn error(file: &str, frame: Option<usize>, error: String) -> Self {
        Record {
            file: file.into(),
            frame,
            face_index: None,
            bbox: None,
            p_fake: None,
            verdict: None,
            video_frames: None,
            heatmap: None,
            error: Some(error),
        }
    }
}

/// A face waiting to be scored.
struct Pending {
    record: Record,
    name: String,
    crop: RgbImage,
}

/// What one input gave: faces to score and records for what had none.
struct Decoded {
    video: bool,
    /// Whether the input could be read at all.
    readable: bool,
    faces: Vec<Pending>,
    errors: Vec<Record>,
}

/// Faces of one input, found by the detector's face pipeline (or with `--crops` the image
/// itself, resized to the input as `eval` does).
fn decode_input(det: &Detector, input: &Input) -> Result<Decoded> {
    let file = fsvfm_data::input::show(&input.path);
    let mut d = Decoded {
        video: is_video_file(&input.path),
        readable: true,
        faces: Vec::new(),
        errors: Vec::new(),
    };
    let frames = match det.crops_in_file(&input.path) {
        Ok(f) => f,
        Err(fsvfm::Error::Input { reason, .. }) => {
            d.readable = false;
            d.errors.push(Record::error(&file, None, reason));
            return Ok(d);
        }
        Err(e) => return Err(e.into()),
    };
    for f in frames {
        if f.crops.is_empty() {
            d.errors
                .push(Record::error(&file, f.frame, "no face detected".into()));
        }
        for (k, (bbox, crop)) in f.crops.into_iter().enumerate() {
            let mut name = input.name.clone();
            if let Some(i) = f.frame {
                name += &format!("_frame_{i:05}");
            }
            if k > 0 {
                name += &format!("_face{k}");
            }
            d.faces.push(Pending {
                record: Record {
                    file: file.clone(),
                    frame: f.frame,
                    face_index: Some(k),
                    bbox,
                    p_fake: None,
                    verdict: None,
                    video_frames: None,
                    heatmap: None,
                    error: None,
                },
                name,
                crop,
            });
        }
    }
    Ok(d)
}

/// Runs `fsvfm predict`.
pub fn predict_cmd(a: PredictArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    ensure!(a.frames > 0, "--frames must be at least 1");
    let det = a.ck.load(fsvfm::DetectorOptions {
        all_faces: a.all_faces,
        crops: a.crops,
        frames: a.frames,
        batch_size: a.batch_size,
        face_models: a.models.clone(),
        ..Default::default()
    })?;
    let cal = det.calibration();
    eprintln!(
        "verdicts: fake at P(fake) >= {:.4}, suspect from {:.4}{}",
        cal.decision_threshold(),
        cal.suspect_from(),
        if cal.is_calibrated() {
            " (calibrated)"
        } else {
            " (uncalibrated: run fsvfm calibrate)"
        }
    );
    det.ensure_face_models()
        .context("loading the face models")?;
    let mut inputs = Vec::new();
    for i in &a.inputs {
        inputs.extend(list_inputs(i)?);
    }
    ensure!(!inputs.is_empty(), "no images or videos among the inputs");
    if let Some(dir) = &a.heatmap {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    if a.format == Format::Table {
        writeln!(
            out,
            "{:<48} {:>6} {:>4} {:>8} {:>8}  note",
            "file", "frame", "face", "p_fake", "verdict"
        )?;
    }
    let start = Instant::now();
    let (mut faces_scored, mut readable_inputs) = (0usize, 0usize);
    // Files are decoded and detected in parallel a chunk at a time; the chunk's faces are scored
    // together, so batches span files.
    let chunk = (4 * a.batch_size).max(rayon::current_num_threads());
    for files in inputs.chunks(chunk) {
        let decoded: Vec<Result<Decoded>> =
            files.par_iter().map(|i| decode_input(&det, i)).collect();
        let decoded: Vec<Decoded> = decoded.into_iter().collect::<Result<_>>()?;
        let crops: Vec<RgbImage> = decoded
            .iter()
            .flat_map(|d| d.faces.iter().map(|f| f.crop.clone()))
            .collect();
        let scores: Vec<f64> = det
            .score_crops(&crops)?
            .into_iter()
            .map(f64::from)
            .collect();
        let maps = match &a.heatmap {
            Some(_) => Some(det.attention(&crops)?),
            None => None,
        };
        let mut k = 0;
        for (input, d) in files.iter().zip(decoded) {
            readable_inputs += d.readable as usize;
            let mut video_scores = Vec::new();
            for mut f in d.faces {
                f.record.p_fake = Some(scores[k]);
                f.record.verdict = Some(det.calibration().verdict(scores[k]));
                if let (Some(dir), Some(m)) = (&a.heatmap, &maps) {
                    let path = dir.join(format!("{}.png", f.name));
                    fsvfm::data::atomic::write_png(&fsvfm::heatmap::overlay(&f.crop, &m[k]), &path)
                        .with_context(|| format!("writing {}", path.display()))?;
                    f.record.heatmap = Some(fsvfm_data::input::show(&path));
                }
                k += 1;
                faces_scored += 1;
                video_scores.push(scores[k - 1]);
                emit(&mut out, a.format, &f.record)?;
            }
            for e in &d.errors {
                emit(&mut out, a.format, e)?;
            }
            if d.video && !video_scores.is_empty() {
                let mean = video_scores.iter().sum::<f64>() / video_scores.len() as f64;
                let summary = Record {
                    file: fsvfm_data::input::show(&input.path),
                    frame: None,
                    face_index: None,
                    bbox: None,
                    p_fake: Some(mean),
                    verdict: Some(det.calibration().verdict(mean)),
                    video_frames: Some(video_scores.len()),
                    heatmap: None,
                    error: None,
                };
                emit(&mut out, a.format, &summary)?;
            }
        }
    }
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} inputs ({} readable), {faces_scored} faces scored in {secs:.3} s ({:.1} faces/s)",
        inputs.len(),
        readable_inputs,
        faces_scored as f64 / secs
    );
    if readable_inputs == 0 {
        bail!("none of the inputs could be read (see the error records)");
    }
    Ok(())
}

fn emit(out: &mut dyn Write, format: Format, r: &Record) -> Result<()> {
    match format {
        Format::Jsonl => writeln!(out, "{}", serde_json::to_string(r)?)?,
        Format::Table => {
            let frame = r.frame.map_or("-".into(), |f| f.to_string());
            let face = r.face_index.map_or("-".into(), |f| f.to_string());
            let p = r.p_fake.map_or("-".into(), |p| format!("{p:.4}"));
            let v = r.verdict.map_or("-", fsvfm::Verdict::as_str);
            let note = match (&r.error, r.video_frames) {
                (Some(e), _) => e.clone(),
                (None, Some(n)) => format!("video: mean of {n} faces"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{:<48} {frame:>6} {face:>4} {p:>8} {v:>8}  {note}",
                r.file
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_show_errors_and_video_summaries() {
        let mut buf = Vec::new();
        emit(
            &mut buf,
            Format::Table,
            &Record::error("a.jpg", None, "no face detected".into()),
        )
        .unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.starts_with("a.jpg") && s.trim_end().ends_with("no face detected"));
    }
}

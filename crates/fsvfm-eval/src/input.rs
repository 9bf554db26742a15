//! Input validation, the [`ScoreSet`] container and video-level aggregation.
//!
//! Convention (ARCHITECTURE.md): label 1 = fake / attack, 0 = real / bona fide; scores are
//! P(fake), higher = more likely fake.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{EvalError, Position};

/// Class sizes of a validated input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassCounts {
    /// Number of fake samples (label 1, the positive class).
    pub n_pos: usize,
    /// Number of real samples (label 0).
    pub n_neg: usize,
}

/// Checks lengths, labels ∈ {0, 1} and finite scores; one class only is allowed.
pub(crate) fn check(labels: &[u8], scores: &[f64]) -> Result<ClassCounts, EvalError> {
    if labels.len() != scores.len() {
        return Err(EvalError::LengthMismatch {
            what: "scores",
            expected: labels.len(),
            found: scores.len(),
        });
    }
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    let mut n_pos = 0;
    for (i, &l) in labels.iter().enumerate() {
        match l {
            0 => {}
            1 => n_pos += 1,
            _ => {
                return Err(EvalError::InvalidLabel {
                    at: Position::Index(i),
                    value: l.to_string(),
                });
            }
        }
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(EvalError::NonFiniteScore {
            at: Position::Index(i),
            value: scores[i].to_string(),
        });
    }
    Ok(ClassCounts {
        n_pos,
        n_neg: labels.len() - n_pos,
    })
}

/// [`check`] plus the requirement that both classes are present.
pub(crate) fn check_both(labels: &[u8], scores: &[f64]) -> Result<ClassCounts, EvalError> {
    let c = check(labels, scores)?;
    require_both(c)?;
    Ok(c)
}

pub(crate) fn require_both(c: ClassCounts) -> Result<(), EvalError> {
    if c.n_pos == 0 {
        return Err(EvalError::SingleClass {
            n: c.n_neg,
            class: "real (label 0)",
        });
    }
    if c.n_neg == 0 {
        return Err(EvalError::SingleClass {
            n: c.n_pos,
            class: "fake (label 1)",
        });
    }
    Ok(())
}

/// Video membership of the samples of a [`ScoreSet`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Videos {
    /// Video ids in order of first appearance. Resampled sets may repeat a name (one entry per
    /// drawn copy), which is why samples refer to videos by index, not by name.
    pub names: Vec<String>,
    /// `of_sample[i]` = index into `names` of sample `i`'s video.
    pub of_sample: Vec<usize>,
}

/// Groups samples by video id (first-appearance order) and checks that each video has one label.
fn index_videos<S: AsRef<str>>(
    labels: &[u8],
    ids: &[S],
    at: impl Fn(usize) -> Position,
) -> Result<Videos, EvalError> {
    if ids.len() != labels.len() {
        return Err(EvalError::LengthMismatch {
            what: "video ids",
            expected: labels.len(),
            found: ids.len(),
        });
    }
    let mut lookup: HashMap<&str, usize> = HashMap::new();
    let mut names = Vec::new();
    let mut first_sample = Vec::new();
    let mut of_sample = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(EvalError::EmptyVideoId { at: at(i) });
        }
        let v = *lookup.entry(id).or_insert_with(|| {
            names.push(id.to_owned());
            first_sample.push(i);
            names.len() - 1
        });
        let first = first_sample[v];
        if labels[first] != labels[i] {
            return Err(EvalError::InconsistentVideoLabel {
                video: id.to_owned(),
                first_label: labels[first],
                first_at: at(first),
                label: labels[i],
                at: at(i),
            });
        }
        of_sample.push(v);
    }
    Ok(Videos { names, of_sample })
}

/// Per-video labels and scores produced by [`aggregate_by_video`] / [`ScoreSet::video_level`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoScores {
    /// Video ids, in order of first appearance in the frame list (as the official
    /// `get_video_level_label_pred`, which iterates a Python dict).
    pub ids: Vec<String>,
    /// Label of each video (1 = fake, 0 = real).
    pub labels: Vec<u8>,
    /// Video score = arithmetic mean of its frame scores, summed in frame order.
    pub scores: Vec<f64>,
    /// Number of frames of each video.
    pub frames: Vec<usize>,
}

fn aggregate(labels: &[u8], scores: &[f64], videos: &Videos) -> VideoScores {
    let n = videos.names.len();
    let mut sums = vec![0.0f64; n];
    let mut frames = vec![0usize; n];
    let mut vlabels = vec![0u8; n];
    // Sequential summation in frame order reproduces Python's `sum(list) / len(list)` bit for bit.
    for (i, &v) in videos.of_sample.iter().enumerate() {
        sums[v] += scores[i];
        frames[v] += 1;
        vlabels[v] = labels[i];
    }
    let scores = sums
        .iter()
        .zip(&frames)
        .map(|(s, &c)| s / c as f64)
        .collect();
    VideoScores {
        ids: videos.names.clone(),
        labels: vlabels,
        scores,
        frames,
    }
}

/// Video-level scores: the mean of the frame scores of each video id (spec/method.md §6.1 for
/// DfD, §6.3 for FAS's two frames per video), with the video's label.
///
/// Errors: empty input, length mismatches, labels other than 0/1, non-finite scores, empty ids,
/// and frames of one video with different labels ([`EvalError::InconsistentVideoLabel`]; the
/// official DfD code silently keeps the first frame's label and the FAS code averages labels).
pub fn aggregate_by_video<S: AsRef<str>>(
    labels: &[u8],
    scores: &[f64],
    video_ids: &[S],
) -> Result<VideoScores, EvalError> {
    check(labels, scores)?;
    let videos = index_videos(labels, video_ids, Position::Index)?;
    Ok(aggregate(labels, scores, &videos))
}

/// A validated set of labelled scores, optionally grouped into videos.
///
/// Invariants (checked on construction): at least one sample, `labels.len() == scores.len()`,
/// labels ∈ {0 (real), 1 (fake)}, finite scores, and when video ids are attached, one label per
/// video. A single class is allowed here (a bootstrap resample may have one); the metrics that
/// need both classes return [`EvalError::SingleClass`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSet {
    labels: Vec<u8>,
    scores: Vec<f64>,
    videos: Option<Videos>,
}

impl ScoreSet {
    /// Validates frame-level labels (1 = fake, 0 = real) and scores (P(fake)).
    pub fn new(labels: Vec<u8>, scores: Vec<f64>) -> Result<Self, EvalError> {
        check(&labels, &scores)?;
        Ok(Self {
            labels,
            scores,
            videos: None,
        })
    }

    /// Attaches one video id per sample; frames of a video must share its label.
    pub fn with_videos<S: AsRef<str>>(self, video_ids: &[S]) -> Result<Self, EvalError> {
        self.with_videos_at(video_ids, Position::Index)
    }

    /// As [`ScoreSet::with_videos`], reporting positions through `at` (CSV line numbers).
    pub(crate) fn with_videos_at<S: AsRef<str>>(
        mut self,
        video_ids: &[S],
        at: impl Fn(usize) -> Position,
    ) -> Result<Self, EvalError> {
        self.videos = Some(index_videos(&self.labels, video_ids, at)?);
        Ok(self)
    }

    /// Builds a set from parts that are valid by construction (bootstrap resamples).
    pub(crate) fn from_parts(labels: Vec<u8>, scores: Vec<f64>, videos: Option<Videos>) -> Self {
        debug_assert_eq!(labels.len(), scores.len());
        Self {
            labels,
            scores,
            videos,
        }
    }

    /// Labels, 1 = fake, 0 = real.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Scores, P(fake).
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// Number of samples (frames).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always `false`: a `ScoreSet` holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of fake samples (label 1).
    pub fn n_fake(&self) -> usize {
        self.labels.iter().filter(|&&l| l == 1).count()
    }

    /// Number of real samples (label 0).
    pub fn n_real(&self) -> usize {
        self.len() - self.n_fake()
    }

    /// Whether video ids are attached.
    pub fn has_videos(&self) -> bool {
        self.videos.is_some()
    }

    /// Number of videos, if video ids are attached.
    pub fn n_videos(&self) -> Option<usize> {
        self.videos.as_ref().map(|v| v.names.len())
    }

    /// Video id of sample `i`, if video ids are attached.
    pub fn video_of(&self, i: usize) -> Option<&str> {
        let v = self.videos.as_ref()?;
        Some(&v.names[v.of_sample[i]])
    }

    pub(crate) fn videos(&self) -> Option<&Videos> {
        self.videos.as_ref()
    }

    pub(crate) fn counts(&self) -> ClassCounts {
        let n_pos = self.n_fake();
        ClassCounts {
            n_pos,
            n_neg: self.len() - n_pos,
        }
    }

    /// Video-level labels and mean scores ([`aggregate_by_video`]); `None` without video ids.
    pub fn video_level(&self) -> Option<VideoScores> {
        self.videos
            .as_ref()
            .map(|v| aggregate(&self.labels, &self.scores, v))
    }
}

//! Percentile bootstrap confidence intervals.
//!
//! Each resample draws, with replacement and as many times as there are units, either frames
//! ([`ResampleUnit::Frames`]) or whole videos with all their frames ([`ResampleUnit::Videos`], a
//! cluster bootstrap: frames of one video are correlated, so videos are the independent units).
//! A resample containing a single class is skipped and counted, since AUC, EER and the other
//! ranking metrics are undefined on it. The interval is the (α/2, 1 − α/2) quantile pair of the
//! resampled values (α = 1 − confidence), with numpy's default linear interpolation between order
//! statistics.
//!
//! Randomness comes from `ChaCha8Rng::seed_from_u64(seed)`; indices are drawn with
//! `Rng::random_range`, so intervals are reproducible for a given seed, input order and `rand`
//! 0.9.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::EvalError;
use crate::input::{ScoreSet, Videos};
use crate::metrics::{MetricKind, Metrics, evaluate};

/// What one bootstrap draw picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResampleUnit {
    /// Individual frames / images; a frame keeps its video id.
    Frames,
    /// Whole videos (requires video ids); each drawn copy of a video counts as a separate video.
    Videos,
}

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapConfig {
    /// Number of resamples drawn (skipped ones included).
    pub n_resamples: usize,
    /// Confidence level in (0, 1), e.g. 0.95.
    pub confidence: f64,
    /// Seed of the `ChaCha8Rng`.
    pub seed: u64,
    /// Frames or videos.
    pub unit: ResampleUnit,
}

impl Default for BootstrapConfig {
    /// 1000 frame resamples, 95 %, seed 0.
    fn default() -> Self {
        Self {
            n_resamples: 1000,
            confidence: 0.95,
            seed: 0,
            unit: ResampleUnit::Frames,
        }
    }
}

/// A percentile bootstrap interval for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConfidenceInterval {
    /// The metric on the full (not resampled) data.
    pub estimate: f64,
    /// Lower bound: the (1 − confidence)/2 quantile of the resampled values.
    pub lower: f64,
    /// Upper bound: the (1 + confidence)/2 quantile of the resampled values.
    pub upper: f64,
    /// The confidence level.
    pub confidence: f64,
    /// Resamples that produced a value.
    pub n_used: usize,
    /// Resamples skipped because they had a single class.
    pub n_skipped: usize,
}

/// Intervals for several metrics computed on the same resamples ([`bootstrap_metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapReport {
    /// The settings used.
    pub config: BootstrapConfig,
    /// Resamples skipped because they had a single class.
    pub n_skipped: usize,
    /// One interval per metric available on the set (video metrics only with video ids).
    pub intervals: Vec<(MetricKind, ConfidenceInterval)>,
}

fn validate(config: &BootstrapConfig, set: &ScoreSet) -> Result<(), EvalError> {
    if config.n_resamples == 0 {
        return Err(EvalError::InvalidArgument(
            "n_resamples must be at least 1".into(),
        ));
    }
    if !(config.confidence > 0.0 && config.confidence < 1.0) {
        return Err(EvalError::InvalidArgument(format!(
            "confidence must be in (0, 1), got {}",
            config.confidence
        )));
    }
    if config.unit == ResampleUnit::Videos && !set.has_videos() {
        return Err(EvalError::NoVideoIds);
    }
    Ok(())
}

/// Draws `config.n_resamples` resamples and applies `f` to each; returns the values and the
/// number of single-class resamples skipped. Any other error from `f` aborts.
fn resample_values<T, F>(
    set: &ScoreSet,
    config: &BootstrapConfig,
    mut f: F,
) -> Result<(Vec<T>, usize), EvalError>
where
    F: FnMut(&ScoreSet) -> Result<T, EvalError>,
{
    validate(config, set)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n = set.len();
    // Frames of each video, for the cluster bootstrap.
    let members: Vec<Vec<usize>> = match (config.unit, set.videos()) {
        (ResampleUnit::Videos, Some(v)) => {
            let mut m = vec![Vec::new(); v.names.len()];
            for (i, &vi) in v.of_sample.iter().enumerate() {
                m[vi].push(i);
            }
            m
        }
        _ => Vec::new(),
    };
    let mut values = Vec::with_capacity(config.n_resamples);
    let mut skipped = 0;
    for _ in 0..config.n_resamples {
        let resample = match config.unit {
            ResampleUnit::Frames => {
                let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
                let videos = set.videos().map(|v| Videos {
                    names: v.names.clone(),
                    of_sample: idx.iter().map(|&i| v.of_sample[i]).collect(),
                });
                ScoreSet::from_parts(
                    idx.iter().map(|&i| set.labels()[i]).collect(),
                    idx.iter().map(|&i| set.scores()[i]).collect(),
                    videos,
                )
            }
            ResampleUnit::Videos => {
                let names = &set.videos().expect("checked in validate").names;
                let mut labels = Vec::with_capacity(n);
                let mut scores = Vec::with_capacity(n);
                let mut of_sample = Vec::with_capacity(n);
                let mut drawn = Vec::with_capacity(names.len());
                for copy in 0..names.len() {
                    let v = rng.random_range(0..names.len());
                    drawn.push(names[v].clone());
                    for &i in &members[v] {
                        labels.push(set.labels()[i]);
                        scores.push(set.scores()[i]);
                        of_sample.push(copy);
                    }
                }
                let videos = Videos {
                    names: drawn,
                    of_sample,
                };
                ScoreSet::from_parts(labels, scores, Some(videos))
            }
        };
        match f(&resample) {
            Ok(v) => values.push(v),
            Err(EvalError::SingleClass { .. }) => skipped += 1,
            Err(e) => return Err(e),
        }
    }
    if values.is_empty() {
        return Err(EvalError::NoValidResamples { skipped });
    }
    Ok((values, skipped))
}

/// numpy `quantile(values, q)` with the default "linear" method; `sorted` must be ascending.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn interval(
    estimate: f64,
    mut values: Vec<f64>,
    skipped: usize,
    confidence: f64,
) -> ConfidenceInterval {
    values.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    ConfidenceInterval {
        estimate,
        lower: quantile(&values, alpha / 2.0),
        upper: quantile(&values, 1.0 - alpha / 2.0),
        confidence,
        n_used: values.len(),
        n_skipped: skipped,
    }
}

/// Percentile bootstrap interval of an arbitrary metric `metric(set)`.
///
/// `metric` is applied to the full set (the estimate; its errors propagate) and to every
/// resample; resamples on which it returns [`EvalError::SingleClass`] are skipped and counted.
pub fn bootstrap_ci<F>(
    set: &ScoreSet,
    config: &BootstrapConfig,
    mut metric: F,
) -> Result<ConfidenceInterval, EvalError>
where
    F: FnMut(&ScoreSet) -> Result<f64, EvalError>,
{
    let estimate = metric(set)?;
    let (values, skipped) = resample_values(set, config, &mut metric)?;
    Ok(interval(estimate, values, skipped, config.confidence))
}

/// Percentile interval of a statistic of several score vectors on the same samples, e.g. the AUC
/// difference of two detectors on one test set: every resample draws the same frames for all
/// vectors (a paired bootstrap), so what the detectors share (the hard and easy images) cancels
/// in the difference.
///
/// `stat(labels, scores)` receives the resampled labels and, per input vector in order, its
/// resampled scores; the estimate is `stat` on the full data. Frames only
/// ([`ResampleUnit::Videos`] is refused: no video ids here). Single-class resamples are skipped
/// and counted as in [`bootstrap_ci`].
pub fn bootstrap_paired<F>(
    labels: &[u8],
    scores: &[&[f64]],
    config: &BootstrapConfig,
    mut stat: F,
) -> Result<ConfidenceInterval, EvalError>
where
    F: FnMut(&[u8], &[Vec<f64>]) -> Result<f64, EvalError>,
{
    if config.unit != ResampleUnit::Frames {
        return Err(EvalError::InvalidArgument(
            "a paired bootstrap resamples frames".into(),
        ));
    }
    if let Some(s) = scores.iter().find(|s| s.len() != labels.len()) {
        return Err(EvalError::InvalidArgument(format!(
            "{} scores for {} labels",
            s.len(),
            labels.len()
        )));
    }
    let full: Vec<Vec<f64>> = scores.iter().map(|s| s.to_vec()).collect();
    let estimate = stat(labels, &full)?;
    // The resampler draws from a set whose "scores" are the sample indices; each resample is then
    // gathered from every vector with the same indices.
    let index_set = ScoreSet::new(
        labels.to_vec(),
        (0..labels.len()).map(|i| i as f64).collect(),
    )?;
    let (values, skipped) = resample_values(&index_set, config, |r| {
        let idx: Vec<usize> = r.scores().iter().map(|&i| i as usize).collect();
        let drawn: Vec<Vec<f64>> = scores
            .iter()
            .map(|s| idx.iter().map(|&i| s[i]).collect())
            .collect();
        stat(r.labels(), &drawn)
    })?;
    Ok(interval(estimate, values, skipped, config.confidence))
}

/// Intervals for every [`Metrics`] field available on `set`, all from the same resamples (so the
/// intervals are paired across metrics); one [`evaluate`] per resample.
pub fn bootstrap_metrics(
    set: &ScoreSet,
    config: &BootstrapConfig,
) -> Result<BootstrapReport, EvalError> {
    let full = evaluate(set)?;
    let (resampled, skipped): (Vec<Metrics>, usize) = resample_values(set, config, evaluate)?;
    let intervals = MetricKind::ALL
        .iter()
        .filter_map(|&kind| {
            let estimate = full.get(kind)?;
            let values = resampled
                .iter()
                .map(|m| m.get(kind).expect("same kinds on every resample"))
                .collect();
            Some((kind, interval(estimate, values, skipped, config.confidence)))
        })
        .collect();
    Ok(BootstrapReport {
        config: *config,
        n_skipped: skipped,
        intervals,
    })
}

/// A table of bootstrap intervals, one row per metric.
pub fn format_intervals(report: &BootstrapReport) -> String {
    let c = &report.config;
    let unit = match c.unit {
        ResampleUnit::Frames => "frames",
        ResampleUnit::Videos => "videos",
    };
    let mut out = format!(
        "{:.0}% bootstrap CI: {} resamples of {unit}, seed {}, {} single-class resamples skipped\n",
        c.confidence * 100.0,
        c.n_resamples,
        c.seed,
        report.n_skipped
    );
    out.push_str(&format!(
        "{:<18} {:>10} {:>10} {:>10}\n",
        "metric", "estimate", "lower", "upper"
    ));
    for (kind, ci) in &report.intervals {
        out.push_str(&format!(
            "{:<18} {:>10.6} {:>10.6} {:>10.6}\n",
            kind.label(),
            ci.estimate,
            ci.lower,
            ci.upper
        ));
    }
    out
}

//! The [`Metrics`] summary, computed in one pass over a [`ScoreSet`], and its text table.

use std::fmt;

use serde::Serialize;

use crate::error::EvalError;
use crate::input::{ScoreSet, require_both};
use crate::ranking::Ranking;
use crate::threshold::{Confusion, DEFAULT_THRESHOLD, FAS_GRID_DENSITY};

/// TPR@FPR target of the FAS protocol: 1 %.
pub const FAS_TARGET_FPR: f64 = 0.01;

/// All headline metrics of one score set. Fractions in [0, 1] (the papers print ×100).
///
/// Positive class = fake = label 1; scores are P(fake). Which reference each field reproduces is
/// listed in the crate README.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Number of samples (frames).
    pub n_samples: usize,
    /// Number of fake samples (label 1).
    pub n_fake: usize,
    /// Number of real samples (label 0).
    pub n_real: usize,
    /// Frame-level ROC AUC (sklearn `roc_auc_score`).
    pub auc: f64,
    /// Frame-level EER: root of `1 − x − interp(fpr, tpr)(x)` (FSFM `util/metrics.py`, brentq).
    pub eer: f64,
    /// Frame-level average precision (sklearn `average_precision_score`).
    pub ap: f64,
    /// Frame-level accuracy at 0.5 (score ≥ 0.5 → fake).
    pub acc: f64,
    /// Frame-level balanced accuracy at 0.5 (score ≥ 0.5 → fake).
    pub balanced_acc: f64,
    /// HTER at the FAS grid-EER threshold (`statistic.py`; equals the grid EER on the same data).
    pub hter: f64,
    /// The grid threshold at which `hter` is measured.
    pub hter_threshold: f64,
    /// TPR at FPR ≤ 1 %: last point of the default ROC with FPR ≤ 0.01 (FAS `evaluate.py`).
    pub tpr_at_fpr_1pct: f64,
    /// Number of videos, when video ids were given.
    pub n_videos: Option<usize>,
    /// Video-level ROC AUC over mean frame scores, when video ids were given.
    pub video_auc: Option<f64>,
    /// Video-level EER (same definition as `eer`) over mean frame scores, when video ids were
    /// given.
    pub video_eer: Option<f64>,
}

impl Metrics {
    /// The value of one metric; `None` for a video metric without video ids.
    pub fn get(&self, kind: MetricKind) -> Option<f64> {
        match kind {
            MetricKind::Auc => Some(self.auc),
            MetricKind::Eer => Some(self.eer),
            MetricKind::Ap => Some(self.ap),
            MetricKind::Acc => Some(self.acc),
            MetricKind::BalancedAcc => Some(self.balanced_acc),
            MetricKind::Hter => Some(self.hter),
            MetricKind::TprAtFpr1pct => Some(self.tpr_at_fpr_1pct),
            MetricKind::VideoAuc => self.video_auc,
            MetricKind::VideoEer => self.video_eer,
        }
    }

    /// Pretty-printed JSON (the CLI's `--json` output). Cannot fail: the struct holds only
    /// numbers and options.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("Metrics serialises infallibly")
    }
}

/// Names for the scalar fields of [`Metrics`], e.g. to pick bootstrap targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// [`Metrics::auc`].
    Auc,
    /// [`Metrics::eer`].
    Eer,
    /// [`Metrics::ap`].
    Ap,
    /// [`Metrics::acc`].
    Acc,
    /// [`Metrics::balanced_acc`].
    BalancedAcc,
    /// [`Metrics::hter`].
    Hter,
    /// [`Metrics::tpr_at_fpr_1pct`].
    #[serde(rename = "tpr_at_fpr_1pct")]
    TprAtFpr1pct,
    /// [`Metrics::video_auc`].
    VideoAuc,
    /// [`Metrics::video_eer`].
    VideoEer,
}

impl MetricKind {
    /// Every kind, in table order.
    pub const ALL: [MetricKind; 9] = [
        MetricKind::Auc,
        MetricKind::Eer,
        MetricKind::Ap,
        MetricKind::Acc,
        MetricKind::BalancedAcc,
        MetricKind::Hter,
        MetricKind::TprAtFpr1pct,
        MetricKind::VideoAuc,
        MetricKind::VideoEer,
    ];

    /// Short display name.
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::Auc => "AUC",
            MetricKind::Eer => "EER",
            MetricKind::Ap => "AP",
            MetricKind::Acc => "ACC@0.5",
            MetricKind::BalancedAcc => "balanced ACC@0.5",
            MetricKind::Hter => "HTER (FAS grid)",
            MetricKind::TprAtFpr1pct => "TPR@FPR=1%",
            MetricKind::VideoAuc => "video AUC",
            MetricKind::VideoEer => "video EER",
        }
    }

    /// Whether the metric is computed on video-level scores.
    pub fn is_video_level(self) -> bool {
        matches!(self, MetricKind::VideoAuc | MetricKind::VideoEer)
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Computes every [`Metrics`] field from one sort of the frames (and one of the videos).
///
/// Errors: [`EvalError::SingleClass`] when only one class is present.
pub fn evaluate(set: &ScoreSet) -> Result<Metrics, EvalError> {
    let counts = set.counts();
    require_both(counts)?;
    let ranking = Ranking::new(set.labels(), set.scores(), counts);
    let roc = ranking.roc(true);
    let at_half = Confusion::from_ranking(&ranking, DEFAULT_THRESHOLD);
    let grid = ranking.eer_grid(FAS_GRID_DENSITY);
    let hter = Confusion::from_ranking(&ranking, grid.threshold).hter();

    let (mut n_videos, mut video_auc, mut video_eer) = (None, None, None);
    if let Some(v) = set.video_level() {
        // Each video has one label, so the video level has both classes whenever the frame level
        // does.
        let vr = Ranking::checked(&v.labels, &v.scores)?;
        let vroc = vr.roc(true);
        n_videos = Some(v.ids.len());
        video_auc = Some(vroc.auc());
        video_eer = Some(vroc.eer().eer);
    }

    Ok(Metrics {
        n_samples: set.len(),
        n_fake: counts.n_pos,
        n_real: counts.n_neg,
        auc: roc.auc(),
        eer: roc.eer().eer,
        ap: ranking.average_precision(),
        acc: at_half.accuracy(),
        balanced_acc: at_half.balanced_accuracy(),
        hter,
        hter_threshold: grid.threshold,
        tpr_at_fpr_1pct: roc.tpr_at_fpr(FAS_TARGET_FPR),
        n_videos,
        video_auc,
        video_eer,
    })
}

/// [`evaluate`] on slices: labels (1 = fake, 0 = real), scores (P(fake)) and optionally one video
/// id per frame.
pub fn compute_metrics(
    labels: &[u8],
    scores: &[f64],
    video_ids: Option<&[String]>,
) -> Result<Metrics, EvalError> {
    let mut set = ScoreSet::new(labels.to_vec(), scores.to_vec())?;
    if let Some(ids) = video_ids {
        set = set.with_videos(ids)?;
    }
    evaluate(&set)
}

/// A human-readable table of `m`: one row per metric with the fraction and the percentage.
pub fn format_table(m: &Metrics) -> String {
    let mut out = format!(
        "{} samples ({} fake, {} real)",
        m.n_samples, m.n_fake, m.n_real
    );
    if let Some(v) = m.n_videos {
        out.push_str(&format!(", {v} videos"));
    }
    out.push('\n');
    out.push_str(&format!("{:<18} {:>10} {:>8}\n", "metric", "value", "%"));
    for kind in MetricKind::ALL {
        if let Some(v) = m.get(kind) {
            out.push_str(&format!(
                "{:<18} {:>10.6} {:>8.2}",
                kind.label(),
                v,
                v * 100.0
            ));
            if kind == MetricKind::Hter {
                out.push_str(&format!("  (threshold {})", m.hter_threshold));
            }
            out.push('\n');
        }
    }
    out
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_table(self))
    }
}

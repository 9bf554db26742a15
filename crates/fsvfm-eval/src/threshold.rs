//! Metrics at a decision threshold: confusion counts, accuracy, balanced accuracy, HTER, and the
//! face anti-spoofing (FAS) grid EER.
//!
//! Decision rule everywhere: **predict fake iff score ≥ threshold** (fake = label 1 = positive).
//!
//! How this compares with the references at a score exactly equal to the threshold:
//! * FSFM frame-level accuracy (`engine_finetune.py`): `argmax` over the logits `[fake, real]`;
//!   an exact tie picks index 0 = fake, i.e. "P(fake) ≥ 0.5 → fake": **same** as here.
//! * FSFM video-level accuracy (`util/metrics.py`): `P(real) ≥ 0.5 → real`, i.e. a video at
//!   exactly 0.5 is *real* there (fake iff P(fake) > 0.5): differs at exact ties only.
//! * DeepfakeBench: `P(fake) > 0.5 → fake`: differs at exact ties only.
//! * FAS `utils/statistic.py`: `prob ≥ thr → positive` with the official positive class real;
//!   we apply the same rule with positive = fake.

use serde::Serialize;

use crate::error::EvalError;
use crate::input::{check, check_both};
use crate::ranking::Ranking;

/// The default decision threshold on P(fake).
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Grid density of the FAS EER search: thresholds `i / 10000` for `i = 0..=10000`, then 1.1
/// (`cross_domain_FAS/utils/statistic.py::get_threshold`).
pub const FAS_GRID_DENSITY: usize = 10_000;

/// Confusion counts at a threshold; positive = fake (label 1), predicted when score ≥ threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Fakes predicted fake.
    pub tp: usize,
    /// Reals predicted fake (false alarms; BPCER in ISO/IEC 30107-3 terms).
    pub fp: usize,
    /// Reals predicted real.
    pub tn: usize,
    /// Fakes predicted real (misses; APCER in ISO/IEC 30107-3 terms).
    pub fn_: usize,
}

impl Confusion {
    pub(crate) fn from_ranking(r: &Ranking, threshold: f64) -> Self {
        let (tp, fp) = r.at_or_above(threshold);
        Self {
            tp,
            fp,
            tn: r.counts.n_neg - fp,
            fn_: r.counts.n_pos - tp,
        }
    }

    /// Total number of samples.
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// Fraction of correct decisions (sklearn `accuracy_score`).
    pub fn accuracy(&self) -> f64 {
        (self.tp + self.tn) as f64 / self.total() as f64
    }

    /// FP / (FP + TN): reals flagged fake. NaN without reals.
    pub fn fpr(&self) -> f64 {
        self.fp as f64 / (self.fp + self.tn) as f64
    }

    /// FN / (FN + TP): fakes missed. NaN without fakes.
    pub fn fnr(&self) -> f64 {
        self.fn_ as f64 / (self.fn_ + self.tp) as f64
    }

    /// TP / (TP + FN), recall of the fake class. NaN without fakes.
    pub fn tpr(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_) as f64
    }

    /// TN / (TN + FP), recall of the real class. NaN without reals.
    pub fn tnr(&self) -> f64 {
        self.tn as f64 / (self.tn + self.fp) as f64
    }

    /// Mean of the two class recalls, (TNR + TPR) / 2 (sklearn `balanced_accuracy_score`, whose
    /// classes are sorted 0, 1).
    pub fn balanced_accuracy(&self) -> f64 {
        (self.tnr() + self.tpr()) / 2.0
    }

    /// Half total error rate (FAR + FRR) / 2 as `statistic.py::get_HTER_at_thr`; symmetric in the
    /// two error rates, so the class convention does not change it.
    pub fn hter(&self) -> f64 {
        (self.fpr() + self.fnr()) / 2.0
    }
}

/// Confusion counts at `threshold` (score ≥ threshold → fake).
pub fn confusion_at(labels: &[u8], scores: &[f64], threshold: f64) -> Result<Confusion, EvalError> {
    let counts = check(labels, scores)?;
    Ok(Confusion::from_ranking(
        &Ranking::new(labels, scores, counts),
        threshold,
    ))
}

/// Accuracy at `threshold` (score ≥ threshold → fake); defined for a single class too.
pub fn accuracy(labels: &[u8], scores: &[f64], threshold: f64) -> Result<f64, EvalError> {
    Ok(confusion_at(labels, scores, threshold)?.accuracy())
}

/// Balanced accuracy (TPR + TNR) / 2 at `threshold` (score ≥ threshold → fake), as sklearn
/// `balanced_accuracy_score` on the thresholded predictions; both classes required.
pub fn balanced_accuracy(labels: &[u8], scores: &[f64], threshold: f64) -> Result<f64, EvalError> {
    check_both(labels, scores)?;
    Ok(confusion_at(labels, scores, threshold)?.balanced_accuracy())
}

/// HTER = (FPR + FNR) / 2 at `threshold` (score ≥ threshold → fake); both classes required.
pub fn hter(labels: &[u8], scores: &[f64], threshold: f64) -> Result<f64, EvalError> {
    check_both(labels, scores)?;
    Ok(confusion_at(labels, scores, threshold)?.hter())
}

/// Result of the FAS grid EER search ([`eer_grid`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridEer {
    /// (FPR + FNR) / 2 at the selected threshold.
    pub eer: f64,
    /// The selected grid threshold (one of `i / 10000` or 1.1).
    pub threshold: f64,
    /// FPR (reals flagged fake) at the threshold.
    pub fpr: f64,
    /// FNR (fakes missed) at the threshold.
    pub fnr: f64,
}

impl Ranking {
    /// `statistic.py::get_EER_states` with positive = fake: scan thresholds `i / density`
    /// (`i = 0..=density`) and 1.1, keep the **last** one minimising |FNR − FPR| (the reference
    /// updates on `dist <= min_dist`), report (FPR + FNR) / 2 there.
    pub(crate) fn eer_grid(&self, density: usize) -> GridEer {
        let grid = (0..=density)
            // Python: `0.0 + i * 1.0 / float(grid_density)`, same rounding.
            .map(|i| i as f64 / density as f64)
            .chain(std::iter::once(1.1));
        let mut best = (1.0f64, 0.0, 0.0, 0.0); // (min_dist, fpr, fnr, thr); min_dist starts at 1
        for thr in grid {
            let c = Confusion::from_ranking(self, thr);
            let (fpr, fnr) = (c.fpr(), c.fnr());
            let dist = (fnr - fpr).abs();
            if dist <= best.0 {
                best = (dist, fpr, fnr, thr);
            }
        }
        let (_, fpr, fnr, threshold) = best;
        GridEer {
            eer: (fpr + fnr) / 2.0,
            threshold,
            fpr,
            fnr,
        }
    }
}

/// The FAS protocol's EER (spec/method.md §6.3): threshold chosen on the 10001-point grid on
/// [0, 1] (+ 1.1) where |FNR − FPR| is smallest (last such grid point), EER = (FPR + FNR) / 2
/// there. Meaningful for scores in [0, 1] (probabilities).
///
/// Unlike [`crate::eer`] (interpolated ROC + root finding, the DfD protocol) this is a value
/// actually reached at a threshold. HTER at `threshold` on the same data equals `eer` by
/// construction; the official FAS code reports that HTER.
pub fn eer_grid(labels: &[u8], scores: &[f64]) -> Result<GridEer, EvalError> {
    Ok(Ranking::checked(labels, scores)?.eer_grid(FAS_GRID_DENSITY))
}

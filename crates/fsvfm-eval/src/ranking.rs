//! Threshold-free metrics: ROC curve, ROC AUC, EER (+ threshold), average precision, TPR@FPR.
//!
//! All of them treat fake (label 1) as the positive class and rank by score (P(fake)),
//! descending. Each function reproduces a named reference bit for bit or to the stated tolerance;
//! see the crate README for the full list.

use serde::Serialize;

use crate::error::EvalError;
use crate::input::{ClassCounts, check_both};

/// One distinct score value of the ranking, with cumulative counts of the samples scoring at least
/// that value: sklearn's `_binary_clf_curve` / `confusion_matrix_at_thresholds` output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    pub threshold: f64,
    /// Fakes with score ≥ `threshold`.
    pub tps: usize,
    /// Reals with score ≥ `threshold`.
    pub fps: usize,
}

/// Samples sorted by score, descending, with tied scores collapsed into one [`Step`].
#[derive(Debug, Clone)]
pub(crate) struct Ranking {
    pub steps: Vec<Step>,
    pub counts: ClassCounts,
}

impl Ranking {
    /// Builds the ranking of a validated input (labels in {0,1}, finite scores).
    pub fn new(labels: &[u8], scores: &[f64], counts: ClassCounts) -> Self {
        let mut pairs: Vec<(f64, u8)> =
            scores.iter().copied().zip(labels.iter().copied()).collect();
        // Order inside a tie group does not matter: only the cumulative counts at the end of each
        // group are kept. `total_cmp` puts -0.0 next to 0.0 and the `!=` below merges them, as
        // numpy's `diff != 0` does.
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut steps = Vec::new();
        let (mut tps, mut fps) = (0usize, 0usize);
        for (i, &(s, l)) in pairs.iter().enumerate() {
            if l == 1 {
                tps += 1;
            } else {
                fps += 1;
            }
            if i + 1 == pairs.len() || pairs[i + 1].0 != s {
                steps.push(Step {
                    threshold: s,
                    tps,
                    fps,
                });
            }
        }
        Self { steps, counts }
    }

    /// Validates (both classes required) and ranks.
    pub fn checked(labels: &[u8], scores: &[f64]) -> Result<Self, EvalError> {
        let counts = check_both(labels, scores)?;
        Ok(Self::new(labels, scores, counts))
    }

    /// sklearn `roc_curve(y, s, drop_intermediate=...)` (sklearn ≥ 1.3: `thresholds[0] = inf`).
    pub fn roc(&self, drop_intermediate: bool) -> RocCurve {
        let s = &self.steps;
        let keep: Vec<&Step> = if drop_intermediate && s.len() > 2 {
            // sklearn keeps point i iff the second difference of fps or tps at i is non-zero
            // (a corner); the first and last points are always kept. Integer counts make the test
            // exact.
            let d2 = |a: usize, b: usize, c: usize| a as i64 - 2 * b as i64 + c as i64;
            s.iter()
                .enumerate()
                .filter(|&(i, _)| {
                    i == 0
                        || i + 1 == s.len()
                        || d2(s[i - 1].fps, s[i].fps, s[i + 1].fps) != 0
                        || d2(s[i - 1].tps, s[i].tps, s[i + 1].tps) != 0
                })
                .map(|(_, st)| st)
                .collect()
        } else {
            s.iter().collect()
        };
        let (n_pos, n_neg) = (self.counts.n_pos as f64, self.counts.n_neg as f64);
        let mut fpr = Vec::with_capacity(keep.len() + 1);
        let mut tpr = Vec::with_capacity(keep.len() + 1);
        let mut thresholds = Vec::with_capacity(keep.len() + 1);
        // The extra point (0, 0) at threshold +inf makes the curve start at the origin.
        fpr.push(0.0);
        tpr.push(0.0);
        thresholds.push(f64::INFINITY);
        for st in keep {
            fpr.push(st.fps as f64 / n_neg);
            tpr.push(st.tps as f64 / n_pos);
            thresholds.push(st.threshold);
        }
        RocCurve {
            fpr,
            tpr,
            thresholds,
        }
    }

    /// sklearn `average_precision_score`: AP = Σₙ (Rₙ − Rₙ₋₁) Pₙ over distinct thresholds in
    /// descending order, R₀ = 0, no interpolation.
    pub fn average_precision(&self) -> f64 {
        let n_pos = self.counts.n_pos as f64;
        // sklearn sums -diff(recall) * precision over the *reversed* curve; summing in the same
        // order keeps the rounding close to numpy's.
        let mut sum = 0.0;
        for (k, st) in self.steps.iter().enumerate().rev() {
            let recall = st.tps as f64 / n_pos;
            let prev_recall = if k == 0 {
                0.0
            } else {
                self.steps[k - 1].tps as f64 / n_pos
            };
            let precision = st.tps as f64 / (st.tps + st.fps) as f64;
            sum += (prev_recall - recall) * precision;
        }
        (-sum).max(0.0)
    }

    /// Counts of fakes and reals with score ≥ `threshold`.
    pub fn at_or_above(&self, threshold: f64) -> (usize, usize) {
        // Steps are in descending threshold order, so "threshold ≥ t" is a prefix.
        let k = self.steps.partition_point(|st| st.threshold >= threshold);
        if k == 0 {
            (0, 0)
        } else {
            (self.steps[k - 1].tps, self.steps[k - 1].fps)
        }
    }
}

/// A ROC curve as returned by scikit-learn's `roc_curve` (fake = positive class).
///
/// `fpr` and `tpr` are non-decreasing, start at (0, 0) with threshold `+inf` (sklearn ≥ 1.3; older
/// versions used `max(score) + 1`) and end at (1, 1) with threshold `min(score)`. Point `i` is the
/// operating point "predict fake iff score ≥ `thresholds[i]`". Serialised as JSON, the first
/// threshold (`inf`) becomes `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocCurve {
    fpr: Vec<f64>,
    tpr: Vec<f64>,
    thresholds: Vec<f64>,
}

/// The equal error rate and the score threshold at which it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eer {
    /// EER as a fraction in [0, 1].
    pub eer: f64,
    /// `interp1d(fpr, thresholds)(eer)` on the default ROC at the exact EER, so samples with
    /// score ≥ `threshold` are called fake. `+inf` when the EER falls inside the curve's first
    /// segment (whose start has threshold `+inf`), as in the reference. See [`RocCurve::eer`] for
    /// the one situation (EER at a curve vertex) where the reference may differ.
    pub threshold: f64,
}

impl RocCurve {
    /// False positive rates: reals with score ≥ threshold / number of reals.
    pub fn fpr(&self) -> &[f64] {
        &self.fpr
    }

    /// True positive rates: fakes with score ≥ threshold / number of fakes.
    pub fn tpr(&self) -> &[f64] {
        &self.tpr
    }

    /// Decreasing thresholds; `thresholds[0] = +inf`.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.fpr.len()
    }

    /// Always `false`: a curve has at least the points (0, 0) and (1, 1).
    pub fn is_empty(&self) -> bool {
        self.fpr.is_empty()
    }

    /// Area under the curve by the trapezoidal rule (sklearn `auc(fpr, tpr)`). Ties are scored
    /// one half because tied scores form one diagonal segment.
    pub fn auc(&self) -> f64 {
        self.fpr
            .windows(2)
            .zip(self.tpr.windows(2))
            .map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0)
            .sum()
    }

    /// TPR of the curve linearly interpolated at `fpr` (`np.interp` semantics, also what
    /// `scipy.interpolate.interp1d` uses for 1-D float data: on a vertical segment the value is
    /// the *top* of the segment; outside [0, 1] the end values).
    pub fn interpolate_tpr(&self, fpr: f64) -> f64 {
        np_interp(fpr, &self.fpr, &self.tpr)
    }

    /// The official FAS definition of TPR@FPR (`cross_domain_FAS/utils/evaluate.py`):
    /// `tpr[fpr <= max_fpr][-1]`, i.e. the TPR of the last curve point whose FPR is ≤ `max_fpr`,
    /// with no interpolation. On the default curve (`drop_intermediate = true`) this can be lower
    /// than on the full curve when collinear points were dropped; the reference uses the default.
    pub fn tpr_at_fpr(&self, max_fpr: f64) -> f64 {
        let k = self.fpr.partition_point(|&f| f <= max_fpr);
        if k == 0 { 0.0 } else { self.tpr[k - 1] }
    }

    /// Equal error rate as the official FSFM code: the root of `1 − x − interp1d(fpr, tpr)(x)` on
    /// [0, 1] (`scipy.optimize.brentq`), plus the threshold `interp1d(fpr, thresholds)(eer)` (a
    /// line left commented out in `util/metrics.py`).
    ///
    /// The function is piecewise linear, strictly decreasing, right-continuous with downward
    /// jumps at vertical ROC segments, ≥ 0 at 0 and −1 at 1. So instead of iterating we find the
    /// segment where it changes sign and solve in closed form:
    /// * sign change inside a segment: linear solve. brentq's secant step is exact on a line, so
    ///   its result differs by rounding only;
    /// * zero or jump at a curve vertex `xₖ`: the root is `xₖ` exactly, where brentq returns a
    ///   point within its `xtol = 2e-12` (+ 4ε·x) of it;
    /// * f(0) = 0 (a perfect ranking): 0, which brentq returns without iterating.
    ///
    /// The threshold is `interp1d(fpr, thresholds)` (= `np.interp`, right-continuous) at this
    /// exact root. Inside a segment that matches the reference to ~1e-12. At a vertex root the
    /// interpolated thresholds jump, and the reference evaluates them at brentq's approximate
    /// root, which may land on either side of `xₖ` (the bracket end with the smaller |f|): on
    /// the right it gives our value, on the left a value between the thresholds of the two
    /// points before the jump (`+inf` on the curve's first segment). That difference is an
    /// artefact of the root finder's tolerance, not of the definition, and we do not copy it.
    ///
    /// Call this on the default curve (`drop_intermediate = true`) to match the reference: the
    /// EER does not depend on it, but the interpolated threshold does.
    pub fn eer(&self) -> Eer {
        let (x, y, t) = (&self.fpr, &self.tpr, &self.thresholds);
        let n = x.len();
        let f = |i: usize| 1.0 - x[i] - y[i];
        // Last index of the run of points sharing x[i] (a vertical segment).
        let run_end = |i: usize| {
            let mut j = i;
            while j + 1 < n && x[j + 1] == x[i] {
                j += 1;
            }
            j
        };

        let mut j = run_end(0);
        if f(j) <= 0.0 {
            return Eer {
                eer: x[j],
                threshold: t[j],
            };
        }
        loop {
            // f(x[j]) > 0 here. The next point starts the next run; it exists because the last
            // point is (1, 1) where f = -1.
            let k = j + 1;
            let top = run_end(k);
            let f_left = 1.0 - x[k] - y[k]; // limit of f as x → x[k] from the left
            if f_left < 0.0 {
                // Root strictly inside (x[j], x[k]).
                let eer = x[j] + f(j) / (f(j) - f_left) * (x[k] - x[j]);
                // np.interp on this segment; an infinite start threshold (the (0, 0) point)
                // gives +inf on the whole segment, as numpy does.
                let threshold = if t[j].is_infinite() {
                    t[j]
                } else {
                    let slope = (t[k] - t[j]) / (x[k] - x[j]);
                    slope * (eer - x[j]) + t[j]
                };
                return Eer { eer, threshold };
            }
            if f_left == 0.0 || f(top) <= 0.0 {
                // Root at the vertex x[k] (a continuous zero or a jump); np.interp there gives
                // the value at the last point of the run.
                return Eer {
                    eer: x[k],
                    threshold: t[top],
                };
            }
            j = top;
        }
    }
}

/// `numpy.interp(x, xp, fp)` for non-decreasing `xp` (duplicates allowed), including its handling
/// of duplicated abscissae (value of the last duplicate) and of infinite ordinates.
pub(crate) fn np_interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return fp[0];
    }
    if x > xp[n - 1] {
        return fp[n - 1];
    }
    // numpy's binary search returns the last j with xp[j] <= x.
    let j = xp.partition_point(|&v| v <= x) - 1;
    if j == n - 1 || xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    let mut r = slope * (x - xp[j]) + fp[j];
    if r.is_nan() {
        // numpy: "If we get nan in one direction, try the other".
        r = slope * (x - xp[j + 1]) + fp[j + 1];
        if r.is_nan() && fp[j] == fp[j + 1] {
            r = fp[j];
        }
    }
    r
}

/// ROC curve of fake-vs-real scores, as sklearn `roc_curve(labels, scores,
/// drop_intermediate=drop_intermediate)`. sklearn's default is `true` (collinear points dropped);
/// the official metrics all use the default.
pub fn roc_curve(
    labels: &[u8],
    scores: &[f64],
    drop_intermediate: bool,
) -> Result<RocCurve, EvalError> {
    Ok(Ranking::checked(labels, scores)?.roc(drop_intermediate))
}

/// ROC AUC, as sklearn `roc_auc_score` (trapezoid over the default curve; ties count one half).
pub fn roc_auc(labels: &[u8], scores: &[f64]) -> Result<f64, EvalError> {
    Ok(Ranking::checked(labels, scores)?.roc(true).auc())
}

/// Equal error rate and its threshold as the official FSFM code (`util/metrics.py`): see
/// [`RocCurve::eer`].
pub fn eer(labels: &[u8], scores: &[f64]) -> Result<Eer, EvalError> {
    Ok(Ranking::checked(labels, scores)?.roc(true).eer())
}

/// Average precision, as sklearn `average_precision_score`: Σₙ (Rₙ − Rₙ₋₁) Pₙ over the distinct
/// score thresholds (descending), without interpolation; fake is the positive class.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Result<f64, EvalError> {
    Ok(Ranking::checked(labels, scores)?.average_precision())
}

fn check_rate(name: &str, v: f64) -> Result<(), EvalError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(EvalError::InvalidArgument(format!(
            "{name} must be in [0, 1], got {v}"
        )))
    }
}

/// TPR at a maximum FPR, the official FAS definition ([`RocCurve::tpr_at_fpr`]): TPR of the last
/// point of the default ROC curve with FPR ≤ `max_fpr` (0.01 for "TPR@FPR=1%").
pub fn tpr_at_fpr(labels: &[u8], scores: &[f64], max_fpr: f64) -> Result<f64, EvalError> {
    check_rate("max_fpr", max_fpr)?;
    Ok(Ranking::checked(labels, scores)?
        .roc(true)
        .tpr_at_fpr(max_fpr))
}

/// TPR of the ROC curve linearly interpolated at `fpr` (`np.interp(fpr, roc_fpr, roc_tpr)`), an
/// alternative to [`tpr_at_fpr`] common in other code bases; never below it.
pub fn tpr_at_fpr_interpolated(labels: &[u8], scores: &[f64], fpr: f64) -> Result<f64, EvalError> {
    check_rate("fpr", fpr)?;
    Ok(Ranking::checked(labels, scores)?
        .roc(true)
        .interpolate_tpr(fpr))
}

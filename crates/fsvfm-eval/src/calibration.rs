//! Fitting a detector's calibration on a labelled validation set (`fsvfm calibrate`): a softmax
//! temperature (temperature scaling, Guo et al., ICML 2017) and a decision threshold at a target
//! false-positive rate on real faces, or at the equal error rate.
//!
//! Positive = fake (label 1), as everywhere in this crate; a sample is called fake when its
//! score is at or above the threshold.

use serde::Serialize;

use crate::EvalError;
use crate::input::check_both;

/// Temperatures are kept in `[MIN_TEMPERATURE, MAX_TEMPERATURE]`: a perfectly separated
/// validation set drives the likelihood's optimum to `T → 0`, which would turn every score into
/// 0 or 1 *\[inferred\]*.
pub const MIN_TEMPERATURE: f64 = 0.05;
/// Upper bound of the fitted temperature (see [`MIN_TEMPERATURE`]).
pub const MAX_TEMPERATURE: f64 = 20.0;

/// A fitted temperature and the validation negative log-likelihood before (`T = 1`) and after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TemperatureFit {
    /// The temperature `T`: calibrated P(fake) = σ(margin / T).
    pub temperature: f64,
    /// Mean NLL at `T = 1`.
    pub nll_before: f64,
    /// Mean NLL at `temperature`.
    pub nll_after: f64,
}

/// `log(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Mean binary NLL of labels under P(fake) = σ(β·margin): `mean softplus(−s·β·margin)` with
/// `s = +1` for fakes, `−1` for reals.
fn nll(labels: &[u8], margins: &[f64], beta: f64) -> f64 {
    let sum: f64 = labels
        .iter()
        .zip(margins)
        .map(|(&y, &m)| softplus(-sign(y) * beta * m))
        .sum();
    sum / labels.len() as f64
}

fn sign(label: u8) -> f64 {
    if label == 1 { 1.0 } else { -1.0 }
}

/// d NLL / dβ: `mean(−s·m·σ(−s·β·m))`, increasing in β (the NLL is convex in β).
fn nll_slope(labels: &[u8], margins: &[f64], beta: f64) -> f64 {
    let sum: f64 = labels
        .iter()
        .zip(margins)
        .map(|(&y, &m)| {
            let sm = sign(y) * m;
            -sm * sigmoid(-sm * beta)
        })
        .sum();
    sum / labels.len() as f64
}

/// Fits the temperature of a two-class head: `margins[i] = logit_fake − logit_real` (for more
/// classes, `logit_fake − logsumexp(other logits)`), `labels[i]` 1 = fake. Minimises the mean
/// NLL of σ(margin / T) over `T ∈ [MIN_TEMPERATURE, MAX_TEMPERATURE]` exactly: the NLL is convex
/// in β = 1/T, so the root of its slope is found by bisection (to 1e-12 relative).
///
/// This is a one-feature logistic regression without intercept (β = 1/T), which is how the
/// reference fixture computes it (scikit-learn, `tools/reference/export_calibration_fixtures.py`).
pub fn fit_temperature(labels: &[u8], margins: &[f64]) -> Result<TemperatureFit, EvalError> {
    check_both(labels, margins)?;
    let (lo_b, hi_b) = (1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE);
    let beta = if nll_slope(labels, margins, lo_b) >= 0.0 {
        lo_b
    } else if nll_slope(labels, margins, hi_b) <= 0.0 {
        hi_b
    } else {
        let (mut lo, mut hi) = (lo_b, hi_b);
        while hi - lo > 1e-12 * hi {
            let mid = 0.5 * (lo + hi);
            if nll_slope(labels, margins, mid) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    Ok(TemperatureFit {
        temperature: 1.0 / beta,
        nll_before: nll(labels, margins, 1.0),
        nll_after: nll(labels, margins, beta),
    })
}

/// P(fake) = σ(margin / T), the calibrated score of a margin.
pub fn calibrated_probability(margin: f64, temperature: f64) -> f64 {
    sigmoid(margin / temperature)
}

/// A decision threshold and what it reaches on the set it was chosen on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdPoint {
    /// Call fake when score ≥ `threshold`.
    pub threshold: f64,
    /// Fakes at or above the threshold / fakes.
    pub tpr: f64,
    /// Reals at or above the threshold / reals.
    pub fpr: f64,
}

/// The threshold with the highest true-positive rate whose false-positive rate on the reals is
/// at most `target_fpr` (ties: the highest such threshold, i.e. the fewest false alarms). The
/// candidates are the scores themselves (sklearn's ROC thresholds), plus one just above the
/// highest score (nothing flagged) so a target of 0 is always reachable.
pub fn threshold_at_fpr(
    labels: &[u8],
    scores: &[f64],
    target_fpr: f64,
) -> Result<ThresholdPoint, EvalError> {
    let counts = check_both(labels, scores)?;
    if !(0.0..=1.0).contains(&target_fpr) {
        return Err(EvalError::InvalidArgument(format!(
            "target false-positive rate {target_fpr} is not in [0, 1]"
        )));
    }
    let (n_fake, n_real) = (counts.n_pos as f64, counts.n_neg as f64);
    let mut order: Vec<(f64, u8)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top = order[0].0;
    // Above every score: next representable value (nothing flagged).
    let mut best = ThresholdPoint {
        threshold: if top.is_finite() {
            f64::from_bits(if top >= 0.0 {
                top.to_bits() + 1
            } else {
                top.to_bits() - 1
            })
        } else {
            f64::INFINITY
        },
        tpr: 0.0,
        fpr: 0.0,
    };
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let s = order[i].0;
        while i < order.len() && order[i].0 == s {
            if order[i].1 == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let (tpr, fpr) = (tp as f64 / n_fake, fp as f64 / n_real);
        if fpr > target_fpr {
            break;
        }
        if tpr > best.tpr {
            best = ThresholdPoint {
                threshold: s,
                tpr,
                fpr,
            };
        }
    }
    Ok(best)
}

/// The threshold at the equal error rate ([`crate::eer`]'s interpolated threshold), with the
/// rates it reaches on the set.
pub fn threshold_at_eer(labels: &[u8], scores: &[f64]) -> Result<ThresholdPoint, EvalError> {
    let e = crate::eer(labels, scores)?;
    let c = crate::confusion_at(labels, scores, e.threshold)?;
    Ok(ThresholdPoint {
        threshold: e.threshold,
        tpr: c.tp as f64 / (c.tp + c.fn_) as f64,
        fpr: c.fp as f64 / (c.fp + c.tn) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_best_allowed_by_brute_force() {
        let labels = [0u8, 0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1];
        let scores = [0.1, 0.2, 0.2, 0.6, 0.55, 0.9, 0.2, 0.95, 0.7, 0.3, 0.6, 0.1];
        for target in [0.0, 0.1, 1.0 / 6.0, 0.2, 0.34, 0.5, 1.0] {
            let got = threshold_at_fpr(&labels, &scores, target).unwrap();
            // Every candidate threshold, checked with the independent confusion counts.
            let mut best: Option<(f64, f64, f64)> = None;
            for &t in scores.iter().chain(&[1.0]) {
                let c = crate::confusion_at(&labels, &scores, t).unwrap();
                let (tpr, fpr) = (c.tp as f64 / 6.0, c.fp as f64 / 6.0);
                if fpr <= target
                    && best.is_none_or(|(bt, btpr, _)| tpr > btpr || (tpr == btpr && t > bt))
                {
                    best = Some((t, tpr, fpr));
                }
            }
            let (t, tpr, fpr) = best.unwrap();
            assert_eq!((got.tpr, got.fpr), (tpr, fpr), "target {target}");
            if tpr > 0.0 {
                assert_eq!(got.threshold, t, "target {target}");
            }
            assert!(got.fpr <= target);
        }
    }

    #[test]
    fn temperature_minimises_the_likelihood_and_is_bounded() {
        let labels = [1u8, 0, 1, 0, 1, 0, 0, 1];
        let margins = [3.0, -2.0, -1.0, 4.0, 8.0, -6.0, 1.0, 0.5];
        let f = fit_temperature(&labels, &margins).unwrap();
        assert!(f.nll_after <= f.nll_before);
        for t in [f.temperature * 0.99, f.temperature * 1.01] {
            assert!(nll(&labels, &margins, 1.0 / t) > f.nll_after);
        }
        // Separable: the bound, not T → 0.
        let sep = fit_temperature(&[1, 0], &[5.0, -5.0]).unwrap();
        assert_eq!(sep.temperature, MIN_TEMPERATURE);
        assert!(fit_temperature(&[1, 1], &[1.0, 2.0]).is_err());
        assert!((calibrated_probability(2.0, 2.0) - sigmoid(1.0)).abs() < 1e-15);
    }
}

//! Learning-rate and EMA-momentum schedules of the official pre-training (spec §1.4, §5).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// MAE `adjust_learning_rate`: linear warmup from 0, then a half-cycle cosine to `min_lr`,
/// evaluated at a fractional epoch (`step / iters_per_epoch + epoch`, set per iteration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate (`blr · effective batch / 256`).
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warmup length in epochs.
    pub warmup_epochs: f64,
    /// Total epochs.
    pub epochs: f64,
}

impl LrSchedule {
    /// The learning rate at fractional epoch `epoch`.
    pub fn at(&self, epoch: f64) -> f64 {
        if epoch < self.warmup_epochs {
            self.lr * epoch / self.warmup_epochs
        } else {
            let span = (self.epochs - self.warmup_epochs).max(f64::MIN_POSITIVE);
            self.min_lr
                + (self.lr - self.min_lr)
                    * 0.5
                    * (1.0 + (PI * (epoch - self.warmup_epochs) / span).cos())
        }
    }
}

/// The EMA momentum of iteration `it` out of `total` (`util/lr_sched.cosine_scheduler(base, 1,
/// epochs, iters)`): `1 − (1 − base)·(1 + cos(π·it/total))/2`, from `base` (0.996) towards 1.
pub fn momentum_at(base: f64, it: u64, total: u64) -> f64 {
    let total = total.max(1) as f64;
    1.0 + 0.5 * (base - 1.0) * (1.0 + (PI * it as f64 / total).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule {
            lr: 2.4e-3,
            min_lr: 0.0,
            warmup_epochs: 40.0,
            epochs: 400.0,
        };
        assert_eq!(s.at(0.0), 0.0);
        assert!((s.at(20.0) - 1.2e-3).abs() < 1e-15);
        assert!((s.at(40.0) - 2.4e-3).abs() < 1e-15);
        assert!((s.at(220.0) - 1.2e-3).abs() < 1e-12);
        assert!(s.at(400.0).abs() < 1e-15);
        assert!(s.at(100.0) > s.at(200.0));
    }

    #[test]
    fn momentum_goes_from_base_to_one() {
        assert!((momentum_at(0.996, 0, 100) - 0.996).abs() < 1e-15);
        assert!((momentum_at(0.996, 50, 100) - 0.998).abs() < 1e-12);
        assert!(momentum_at(0.996, 99, 100) < 1.0);
        assert!(momentum_at(0.996, 99, 100) > 0.99999);
    }
}

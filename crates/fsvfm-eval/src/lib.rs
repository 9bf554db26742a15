//! Evaluation metrics for fsvfm: deepfake detection (DfD/DiFF) and face anti-spoofing (FAS).
//!
//! Conventions (ARCHITECTURE.md): **label 1 = fake / attack (the positive class), 0 = real /
//! bona fide; scores are P(fake)**, higher = more likely fake. The official FSFM code uses the
//! opposite class indices; every formula here is the official one applied with positive = fake.
//!
//! What is computed, and which reference it reproduces (details in the README and on each item):
//! * ROC curve, AUC, AP: scikit-learn `roc_curve`, `roc_auc_score`, `average_precision_score`.
//! * EER (+ threshold): FSFM `util/metrics.py`, `brentq` on the interpolated ROC, solved in
//!   closed form ([`RocCurve::eer`]).
//! * Accuracy, balanced accuracy, HTER at a threshold (score ≥ threshold → fake).
//! * FAS grid EER / HTER and TPR@FPR=1 %: `cross_domain_FAS/utils/{statistic,evaluate}.py`.
//! * Video level: mean of frame scores per video id ([`aggregate_by_video`]).
//! * Percentile bootstrap confidence intervals over frames or videos ([`bootstrap_ci`]).
//!
//! The crate has no tensor dependency; the CLI's `eval-scores` is [`evaluate_csv`] plus
//! [`format_table`] or [`Metrics::to_json_pretty`].
//!
//! ```
//! use fsvfm_eval::{compute_metrics, roc_auc};
//! let labels = [0, 0, 1, 1];
//! let scores = [0.1, 0.4, 0.35, 0.8];
//! assert_eq!(roc_auc(&labels, &scores).unwrap(), 0.75);
//! let m = compute_metrics(&labels, &scores, None).unwrap();
//! assert_eq!(m.acc, 0.75); // 0.35 is the only mistake at 0.5
//! ```

#![warn(missing_docs)]

pub mod attention;
mod bootstrap;
pub mod calibration;
mod csv_input;
mod error;
mod input;
mod metrics;
mod ranking;
mod threshold;

pub use attention::{AttentionAccumulator, AttentionStats};
pub use bootstrap::{
    BootstrapConfig, BootstrapReport, ConfidenceInterval, ResampleUnit, bootstrap_ci,
    bootstrap_metrics, bootstrap_paired, format_intervals,
};
pub use calibration::{
    TemperatureFit, ThresholdPoint, calibrated_probability, fit_temperature, threshold_at_eer,
    threshold_at_fpr,
};
pub use csv_input::{DEFAULT_VIDEO_COLUMN, evaluate_csv, read_scores, read_scores_csv};
pub use error::{EvalError, Position};
pub use input::{ScoreSet, VideoScores, aggregate_by_video};
pub use metrics::{FAS_TARGET_FPR, MetricKind, Metrics, compute_metrics, evaluate, format_table};
pub use ranking::{
    Eer, RocCurve, average_precision, eer, roc_auc, roc_curve, tpr_at_fpr, tpr_at_fpr_interpolated,
};
pub use threshold::{
    Confusion, DEFAULT_THRESHOLD, FAS_GRID_DENSITY, GridEer, accuracy, balanced_accuracy,
    confusion_at, eer_grid, hter,
};

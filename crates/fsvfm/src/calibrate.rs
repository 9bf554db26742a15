//! `fsvfm calibrate`: a detector's temperature and verdict threshold, fitted on a labelled
//! validation set and written into the checkpoint's `fsvfm.json`.
//!
//! The temperature is fitted first (temperature scaling: the validation NLL of
//! σ(margin / T), [`fsvfm_eval::fit_temperature`]); it is monotonic, so AUC and the ranking are
//! unchanged. The threshold is then chosen on the calibrated P(fake): at a target false-positive
//! rate on the real faces (default 5 %), or at the equal error rate.
//!
//! The `suspect` band *\[inferred\]*: from the threshold the same rule would choose at twice the
//! operating point's false-positive rate (at most 50 %) up to the decision threshold, so
//! `suspect` marks the faces a detector twice as permissive would call fake.

use std::path::{Path, PathBuf};

use fsvfm_eval::{fit_temperature, threshold_at_eer, threshold_at_fpr};
use fsvfm_train::sidecar::{Calibration, OperatingPoint, ProducedBy, Sidecar};

use crate::{Detector, DetectorOptions, Error, Result};

/// How the decision threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The highest-TPR threshold whose false-positive rate on the validation reals is at most
    /// this fraction.
    Fpr(f64),
    /// The equal error rate's threshold.
    Eer,
}

/// What to calibrate on.
#[derive(Debug, Clone)]
pub struct CalibrateJob {
    /// The weight file; its folder's `fsvfm.json` receives the calibration (created, from the
    /// options, for an official file without one).
    pub checkpoint: PathBuf,
    /// How to load it (as [`Detector::load_with`]).
    pub options: DetectorOptions,
    /// A labelled validation set of face crops, in any form `fsvfm eval` reads.
    pub data: PathBuf,
    /// DeepfakeBench split to read.
    pub split: String,
    /// Folder relative frame paths are read from (DeepfakeBench, FAS split files).
    pub root: Option<PathBuf>,
    /// The operating point.
    pub target: Target,
}

/// The fitted calibration and where it went.
#[derive(Debug, Clone)]
pub struct Calibrated {
    /// What was written.
    pub calibration: Calibration,
    /// Validation NLL at `T = 1` and at the fitted temperature.
    pub nll_before: f64,
    /// See `nll_before`.
    pub nll_after: f64,
    /// The sidecar written.
    pub sidecar: PathBuf,
    /// Validation images left out (unreadable), with why.
    pub skipped: Vec<fsvfm_data::Skipped>,
}

/// Fits the calibration of `job` (see the module documentation) and writes it atomically
/// into the checkpoint's `fsvfm.json`, keeping the rest of the sidecar.
pub fn calibrate(job: &CalibrateJob) -> Result<Calibrated> {
    if let Target::Fpr(f) = job.target
        && !(f > 0.0 && f < 1.0)
    {
        return Err(Error::Invalid(format!(
            "target false-positive rate {f}: give a fraction in (0, 1), e.g. 0.05"
        )));
    }
    let det = Detector::load_with(&job.checkpoint, &job.options)?;
    let set = det.load_eval_set(&job.data, &job.split, job.root.as_deref())?;
    let labels: Vec<u8> = set.samples.iter().map(|s| s.label).collect();
    let margins = det.margins(&det.logits_normalised(&set.pixels)?);
    let fit = fit_temperature(&labels, &margins)?;
    let p: Vec<f64> = margins
        .iter()
        .map(|&m| fsvfm_eval::calibrated_probability(m, fit.temperature))
        .collect();
    let (point, method, target_fpr) = match job.target {
        Target::Fpr(f) => (threshold_at_fpr(&labels, &p, f)?, "fpr", Some(f)),
        Target::Eer => (threshold_at_eer(&labels, &p)?, "eer", None),
    };
    let suspect = threshold_at_fpr(&labels, &p, (2.0 * point.fpr).min(0.5))?.threshold;
    let n_fake = labels.iter().filter(|&&l| l == 1).count();
    let calibration = Calibration {
        threshold: Some(point.threshold),
        temperature: Some(fit.temperature),
        suspect_threshold: Some(suspect.min(point.threshold)),
        operating_point: Some(OperatingPoint {
            method: method.into(),
            target_fpr,
            tpr: point.tpr,
            fpr: point.fpr,
            n_real: labels.len() - n_fake,
            n_fake,
            data: job.data.display().to_string(),
        }),
    };
    let sidecar = write_calibration(&det, &job.checkpoint, &calibration)?;
    Ok(Calibrated {
        calibration,
        nll_before: fit.nll_before,
        nll_after: fit.nll_after,
        sidecar,
        skipped: set.skipped,
    })
}

/// Puts `calibration` into the sidecar of `checkpoint`'s folder; a file without one (an
/// official `.pth`) gets a new sidecar from what `det` was loaded with, so it loads without
/// options from then on.
fn write_calibration(
    det: &Detector,
    checkpoint: &Path,
    calibration: &Calibration,
) -> Result<PathBuf> {
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    let mut sidecar = match Sidecar::read_in(dir)? {
        Some(s) => s,
        None => {
            let name = checkpoint
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut s = Sidecar::classifier(
                det.kind(),
                &name,
                &det.described().model,
                det.mean_std(),
                ProducedBy {
                    command: "calibrate".into(),
                    settings: serde_json::json!({"imported": name}),
                },
            );
            s.fake_index = Some(det.fake_index());
            s.classes = det.class_names();
            s.fas_norm = (det.kind() == fsvfm_train::sidecar::ModelKind::Fas)
                .then_some(det.described().fas_norm);
            s
        }
    };
    sidecar.calibration = calibration.clone();
    Ok(sidecar.write(dir)?)
}

//! `fsvfm.json`: the one sidecar beside every checkpoint fsvfm writes (pre-training checkpoint
//! folders, fine-tuning, FS-Adapter and FAS output folders). It says everything a reader needs
//! besides the weights: the kind of model, the encoder's architecture, the class order and which
//! class is "fake", the normalisation, the input size, the FAS embedder norm, the calibration, and
//! what produced it.
//!
//! Written atomically by the trainers of this crate, read by `fsvfm::Detector`, `fsvfm::Encoder`
//! and every command. Checkpoints of the first release carry five other files instead
//! (`state.json`, `recipe.toml`, `pretrain_ds_mean_std.txt`, `model.json`, `fas.json`);
//! [`Legacy::read`] reads what they hold so those checkpoints still load.

use std::path::{Path, PathBuf};

use fsvfm_data::MeanStd;
use fsvfm_model::{FasNorm, PretrainConfig, VitConfig};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The sidecar's file name.
pub const SIDECAR_FILE: &str = "fsvfm.json";

/// The sidecar schema this build writes (and the newest it reads).
pub const SIDECAR_SCHEMA: u32 = 1;

/// The version of fsvfm that writes sidecars.
pub const FSVFM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A pre-training checkpoint folder (`online.safetensors` + `target.safetensors`): an
    /// encoder, no head.
    Pretrain,
    /// A fully fine-tuned ViT classifier (`fsvfm finetune`).
    Finetune,
    /// An FS-Adapter classifier on a frozen backbone (`fsvfm adapt`).
    Adapter,
    /// A face anti-spoofing classifier (`fsvfm fas`).
    Fas,
}

impl ModelKind {
    /// Whether the model has a real/fake head.
    pub fn is_classifier(self) -> bool {
        self != ModelKind::Pretrain
    }
}

/// A score calibration (`fsvfm calibrate`): `temperature` dividing the logits before the
/// softmax, then the verdict bands on the calibrated P(fake): `fake` at or above `threshold`,
/// `suspect` in `[suspect_threshold, threshold)`, `real` below. All empty until a checkpoint is
/// calibrated; then [`Calibration::UNCALIBRATED_THRESHOLD`] and
/// [`Calibration::UNCALIBRATED_SUSPECT`] apply.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Calibration {
    /// Decision threshold on P(fake): `fake` when P(fake) ≥ it.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Softmax temperature `T` (P = softmax(logits / T)), fitted by minimising the validation
    /// negative log-likelihood (temperature scaling, Guo et al. 2017).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Lower edge of the `suspect` band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_threshold: Option<f64>,
    /// How the threshold was chosen and what it reached on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_point: Option<OperatingPoint>,
}

/// The validation operating point of a calibrated threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// `fpr` (a target false-positive rate on real faces) or `eer` (the equal error rate).
    pub method: String,
    /// The target false-positive rate (method `fpr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_fpr: Option<f64>,
    /// Fakes at or above the threshold / fakes, on the validation set.
    pub tpr: f64,
    /// Reals at or above the threshold / reals, on the validation set.
    pub fpr: f64,
    /// Validation reals.
    pub n_real: usize,
    /// Validation fakes (or attacks).
    pub n_fake: usize,
    /// The validation set it was fitted on.
    pub data: String,
}

/// What a calibrated (or default) threshold says of a face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// P(fake) under the suspect band.
    Real,
    /// P(fake) in `[suspect_threshold, threshold)`.
    Suspect,
    /// P(fake) at or above the threshold.
    Fake,
}

impl Verdict {
    /// `real`, `suspect` or `fake`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Real => "real",
            Verdict::Suspect => "suspect",
            Verdict::Fake => "fake",
        }
    }
}

impl Calibration {
    /// The threshold of an uncalibrated checkpoint: the softmax's argmax for two classes.
    pub const UNCALIBRATED_THRESHOLD: f64 = 0.5;
    /// Lower edge of the suspect band of an uncalibrated checkpoint *\[inferred\]*: 0.3, so that a
    /// face the head calls real with less than 70 % confidence is flagged for a human look.
    pub const UNCALIBRATED_SUSPECT: f64 = 0.3;

    /// Whether `fsvfm calibrate` fitted a threshold.
    pub fn is_calibrated(&self) -> bool {
        self.threshold.is_some()
    }

    /// The decision threshold in use.
    pub fn decision_threshold(&self) -> f64 {
        self.threshold.unwrap_or(Self::UNCALIBRATED_THRESHOLD)
    }

    /// The lower edge of the suspect band in use (never above the threshold).
    pub fn suspect_from(&self) -> f64 {
        let t = self.decision_threshold();
        match (self.threshold, self.suspect_threshold) {
            (Some(_), Some(s)) => s.min(t),
            (Some(_), None) => t,
            _ => Self::UNCALIBRATED_SUSPECT,
        }
    }

    /// The temperature in use (1 when uncalibrated).
    pub fn temperature_or_one(&self) -> f64 {
        self.temperature.unwrap_or(1.0)
    }

    /// The verdict for a calibrated P(fake). NaN (which scoring never returns) is `fake`, so a
    /// broken score is never waved through.
    pub fn verdict(&self, p_fake: f64) -> Verdict {
        if p_fake.is_nan() || p_fake >= self.decision_threshold() {
            Verdict::Fake
        } else if p_fake >= self.suspect_from() {
            Verdict::Suspect
        } else {
            Verdict::Real
        }
    }
}

/// What wrote a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducedBy {
    /// The training entry point (`pretrain`, `finetune`, `adapt`, `fas`), or `migrated` for a
    /// sidecar built from the previous release's files.
    pub command: String,
    /// Its settings (recipe, schedule, seed, data sizes).
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// The contents of `fsvfm.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// [`SIDECAR_SCHEMA`] when written.
    pub schema_version: u32,
    /// What the checkpoint is.
    pub kind: ModelKind,
    /// The weight files of the folder this describes (`checkpoint-min_val_loss.safetensors`;
    /// `online.safetensors` and `target.safetensors` for pre-training).
    pub weights: Vec<String>,
    /// The encoder (`drop_path_rate` 0; `num_classes` and `global_pool` as the head uses them).
    pub model: VitConfig,
    /// The whole pre-training network (decoders, projector), for pre-training checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain_model: Option<PretrainConfig>,
    /// Class names in head order (official heads: `["fake", "real"]`); empty without a head.
    pub classes: Vec<String>,
    /// Index of the fake (or attack) class in `classes`.
    pub fake_index: Option<usize>,
    /// Normalisation of the inputs (the pre-training set's).
    pub mean_std: MeanStd,
    /// Input side in pixels.
    pub input_size: usize,
    /// The FAS embedder's norm, for FAS checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fas_norm: Option<FasNorm>,
    /// Threshold and temperature, empty until calibrated.
    #[serde(default)]
    pub calibration: Calibration,
    /// The fsvfm version that wrote it.
    pub fsvfm_version: String,
    /// The command and settings that produced it.
    pub produced_by: ProducedBy,
}

/// The official class order of every real/fake head we train (ImageFolder order: fake, real;
/// [`crate::adapt::FAKE_CLASS`], [`crate::adapt::REAL_CLASS`]).
pub fn official_classes() -> Vec<String> {
    let mut c = vec![String::new(); 2];
    c[crate::adapt::FAKE_CLASS] = "fake".into();
    c[crate::adapt::REAL_CLASS] = "real".into();
    c
}

impl Sidecar {
    /// A sidecar for a classifier of `kind` (official class order, fake = 0) on encoder `model`.
    pub fn classifier(
        kind: ModelKind,
        weights: &str,
        model: &VitConfig,
        mean_std: MeanStd,
        produced_by: ProducedBy,
    ) -> Self {
        let mut model = model.clone();
        model.drop_path_rate = 0.0;
        Sidecar {
            schema_version: SIDECAR_SCHEMA,
            kind,
            weights: vec![weights.into()],
            input_size: model.img_size,
            model,
            pretrain_model: None,
            classes: official_classes(),
            fake_index: Some(crate::adapt::FAKE_CLASS),
            mean_std,
            fas_norm: None,
            calibration: Calibration::default(),
            fsvfm_version: FSVFM_VERSION.into(),
            produced_by,
        }
    }

    /// The sidecar of a pre-training checkpoint folder of a run with `state`.
    pub fn pretrain(state: &crate::checkpoint::TrainState) -> Self {
        let mut model = state.recipe.model.encoder.clone();
        model.drop_path_rate = 0.0;
        model.num_classes = 0;
        Sidecar {
            schema_version: SIDECAR_SCHEMA,
            kind: ModelKind::Pretrain,
            weights: vec!["online.safetensors".into(), "target.safetensors".into()],
            input_size: model.img_size,
            model,
            pretrain_model: Some(state.recipe.model.clone()),
            classes: Vec::new(),
            fake_index: None,
            mean_std: state.mean_std,
            fas_norm: None,
            calibration: Calibration::default(),
            fsvfm_version: FSVFM_VERSION.into(),
            produced_by: ProducedBy {
                command: "pretrain".into(),
                settings: serde_json::to_value(&state.recipe).unwrap_or_default(),
            },
        }
    }

    /// Writes `dir/fsvfm.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, TrainError> {
        let path = dir.join(SIDECAR_FILE);
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        fsvfm_model::checkpoint::write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Reads `dir/fsvfm.json`: `Ok(None)` when there is none, an error naming the file when it
    /// cannot be read, is not a sidecar, or is of a newer schema.
    pub fn read_in(dir: &Path) -> Result<Option<Sidecar>, TrainError> {
        let path = dir.join(SIDECAR_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = fsvfm_data::input::read(&path, fsvfm_data::input::Kind::Text)
            .map_err(crate::io_error(&path))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::Checkpoint(format!("{}: not JSON: {e}", path.display())))?;
        let schema = v["schema_version"].as_u64().unwrap_or(0);
        if schema > SIDECAR_SCHEMA as u64 {
            return Err(TrainError::Checkpoint(format!(
                "{}: sidecar schema {schema} is newer than this fsvfm ({FSVFM_VERSION}) reads ({SIDECAR_SCHEMA}); update fsvfm",
                path.display()
            )));
        }
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
    }
}

/// What the previous release's files beside a checkpoint say (each part only when its file is
/// there), with the files read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Legacy {
    /// The encoder: `model.json` (fine-tuning, adapter, FAS) or `state.json`'s recipe
    /// (pre-training folders).
    pub model: Option<VitConfig>,
    /// The whole pre-training network, from `state.json`.
    pub pretrain_model: Option<PretrainConfig>,
    /// `pretrain_ds_mean_std.txt` beside the checkpoint or one folder up, or `state.json`'s.
    pub mean_std: Option<MeanStd>,
    /// `fas.json`'s embedder norm.
    pub fas_norm: Option<FasNorm>,
    /// The files these came from.
    pub files: Vec<PathBuf>,
}

impl Legacy {
    /// Reads the first release's sidecar files in `dir` (the checkpoint's folder).
    pub fn read(dir: &Path) -> Result<Legacy, TrainError> {
        let mut out = Legacy::default();
        let model_json = dir.join("model.json");
        if model_json.is_file() {
            let text = fsvfm_data::input::read_to_string(&model_json)
                .map_err(crate::io_error(&model_json))?;
            out.model =
                Some(serde_json::from_str(&text).map_err(|e| {
                    TrainError::Checkpoint(format!("{}: {e}", model_json.display()))
                })?);
            out.files.push(model_json);
        }
        let state = dir.join("state.json");
        if out.model.is_none() && state.is_file() {
            // A pre-training checkpoint folder; a transfer run's resume state has no recipe.
            if let Ok(s) = crate::checkpoint::read_state::<crate::checkpoint::TrainState>(dir) {
                out.model = Some(s.recipe.model.encoder.clone());
                out.pretrain_model = Some(s.recipe.model);
                out.mean_std = Some(s.mean_std);
                out.files.push(state);
            }
        }
        for cand in [
            dir.join("pretrain_ds_mean_std.txt"),
            dir.join("../pretrain_ds_mean_std.txt"),
        ] {
            if out.mean_std.is_none() && cand.is_file() {
                out.mean_std = Some(
                    MeanStd::read(&cand)
                        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", cand.display())))?,
                );
                out.files.push(cand);
            }
        }
        let fas = dir.join("fas.json");
        if fas.is_file() {
            let bytes = fsvfm_data::input::read(&fas, fsvfm_data::input::Kind::Text)
                .map_err(crate::io_error(&fas))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", fas.display())))?;
            out.fas_norm = Some(
                serde_json::from_value(v["norm"].clone())
                    .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", fas.display())))?,
            );
            out.files.push(fas);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sidecar {
        Sidecar::classifier(
            ModelKind::Adapter,
            "checkpoint-min_val_loss.safetensors",
            &VitConfig::new(8, 32, 2, 4),
            MeanStd::VGGFACE2,
            ProducedBy {
                command: "adapt".into(),
                settings: serde_json::json!({"seed": 1}),
            },
        )
    }

    #[test]
    fn written_and_read_back_unchanged() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Sidecar::read_in(d.path()).unwrap(), None);
        let s = sample();
        s.write(d.path()).unwrap();
        assert_eq!(Sidecar::read_in(d.path()).unwrap(), Some(s.clone()));
        assert_eq!(s.classes[s.fake_index.unwrap()], "fake");
    }

    #[test]
    fn verdict_bands_follow_the_calibration_and_default_to_half() {
        let none = Calibration::default();
        assert!(!none.is_calibrated());
        assert_eq!(none.verdict(0.5), Verdict::Fake);
        assert_eq!(none.verdict(0.49), Verdict::Suspect);
        assert_eq!(none.verdict(0.3), Verdict::Suspect);
        assert_eq!(none.verdict(0.29), Verdict::Real);
        assert_eq!(none.verdict(f64::NAN), Verdict::Fake);
        let c = Calibration {
            threshold: Some(0.8),
            temperature: Some(2.0),
            suspect_threshold: Some(0.6),
            operating_point: None,
        };
        assert_eq!(
            (c.verdict(0.8), c.verdict(0.7), c.verdict(0.59)),
            (Verdict::Fake, Verdict::Suspect, Verdict::Real)
        );
        // A calibrated threshold without a band: no suspects; a band above the threshold is cut.
        let no_band = Calibration {
            suspect_threshold: None,
            ..c.clone()
        };
        assert_eq!(no_band.verdict(0.79), Verdict::Real);
        let wide = Calibration {
            suspect_threshold: Some(0.9),
            ..c.clone()
        };
        assert_eq!(wide.suspect_from(), 0.8);
        // Written into the sidecar and read back.
        let d = tempfile::tempdir().unwrap();
        let mut s = sample();
        s.calibration = c.clone();
        s.write(d.path()).unwrap();
        assert_eq!(Sidecar::read_in(d.path()).unwrap().unwrap().calibration, c);
        assert_eq!(
            serde_json::to_string(&Verdict::Suspect).unwrap(),
            "\"suspect\""
        );
    }

    #[test]
    fn newer_schemas_and_broken_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = 7.into();
        std::fs::write(d.path().join(SIDECAR_FILE), v.to_string()).unwrap();
        let e = Sidecar::read_in(d.path()).unwrap_err().to_string();
        assert!(e.contains("schema 7") && e.contains("fsvfm.json"), "{e}");
        std::fs::write(d.path().join(SIDECAR_FILE), "{").unwrap();
        let e = Sidecar::read_in(d.path()).unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn legacy_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let cfg = VitConfig::new(8, 32, 2, 4);
        std::fs::write(
            d.path().join("model.json"),
            serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
        let ms = MeanStd {
            mean: [0.1, 0.2, 0.3],
            std: [0.4, 0.5, 0.6],
        };
        std::fs::write(
            d.path().join("pretrain_ds_mean_std.txt"),
            ms.to_json_line() + "\n",
        )
        .unwrap();
        std::fs::write(d.path().join("fas.json"), r#"{"norm":"token-axis"}"#).unwrap();
        let l = Legacy::read(d.path()).unwrap();
        assert_eq!(l.model, Some(cfg));
        assert_eq!(l.mean_std, Some(ms));
        assert_eq!(l.fas_norm, Some(FasNorm::TokenAxis));
        assert_eq!(l.files.len(), 3);
        assert_eq!(Legacy::read(&d.path().join("none")).unwrap().model, None);
    }
}

//! # fsvfm
//!
//! FS-VFM (Wang et al., *Scalable Face Security Vision Foundation Model for Deepfake, Diffusion,
//! and Spoofing Detection*; conference version FSFM, CVPR 2025) as a library: what the `fsvfm`
//! command does, callable from Rust.
//!
//! - [`Detector`]: a classifier checkpoint (fine-tuned, FS-Adapter, face anti-spoofing, ours or
//!   official) with its normalisation and the face pipeline of `fsvfm prepare`: P(fake) for the
//!   faces of images and videos ([`Detector::predict_file`], [`Detector::predict_image`]), of
//!   face crops ([`Detector::score_crops`]), and attention heat maps ([`Detector::heatmap`]).
//! - [`Encoder`]: pooled features `[N, D]` of any checkpoint's encoder.
//! - [`fas::run_fas_protocol`]: cross-domain face anti-spoofing, leave-one-domain-out, seeds.
//! - [`transfer::transfer`]: full fine-tuning or an FS-Adapter from typed options
//!   ([`transfer::TransferJob`]), progress to an [`transfer::Observer`].
//! - [`calibrate::calibrate`]: a temperature and a verdict threshold fitted on a validation set,
//!   written into the sidecar; [`Detector::verdict`] then says `real`, `suspect` or `fake`.
//! - [`Sidecar`]: `fsvfm.json`, written beside every checkpoint our trainers write; it says the
//!   architecture, class order, mean/std and calibration, so [`Detector::load`] needs the weight
//!   file alone. Official `.pth` files take [`Detector::load_with`] and [`DetectorOptions`].
//! - The building blocks, re-exported: [`model`] (networks, checkpoints), [`data`] (images,
//!   manifests, mean/std), [`faces`] (detection, crops, region maps), [`masking`] (CRFR-P and the
//!   other strategies), [`train`] (pre-training, fine-tuning, FS-Adapter and FAS trainers with
//!   typed options), [`eval`] (the papers' metrics), [`synth`] (forgery synthesis), and
//!   [`image`], so callers use the same `image` version.
//!
//! ```
//! use fsvfm::{Detector, ModelKind, ProducedBy, Sidecar};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../fsvfm-model/tests/fixtures/classifier_avg.safetensors");
//! # let checkpoint = dir.path().join("checkpoint-min_val_loss.safetensors");
//! # std::fs::copy(fixture, &checkpoint)?;
//! # let mut model = fsvfm::model::VitConfig::new(8, 32, 2, 2);
//! # model.img_size = 32;
//! # Sidecar::classifier(ModelKind::Finetune, "checkpoint-min_val_loss.safetensors", &model,
//! #     fsvfm::data::MeanStd::VGGFACE2, ProducedBy { command: "doc".into(), settings: Default::default() })
//! #     .write(dir.path())?;
//! // A checkpoint written by `fsvfm finetune` / `adapt` / `fas`: its fsvfm.json says the rest.
//! let detector = Detector::load(&checkpoint)?;
//! let crop = fsvfm::image::RgbImage::from_pixel(32, 32, fsvfm::image::Rgb([128, 100, 90]));
//! let p_fake = detector.score_crops(&[crop])?;
//! assert!((0.0..=1.0).contains(&p_fake[0]));
//! # Ok(())
//! # }
//! ```
//!
//! Faces in a photo or video need the face models (`bash tools/face/setup.sh` once):
//!
//! ```no_run
//! # fn main() -> Result<(), fsvfm::Error> {
//! let detector = fsvfm::Detector::load("run/checkpoint-min_val_loss.safetensors")?;
//! for face in detector.predict_file("photo.jpg")? {
//!     println!("{:?} P(fake) = {:.3}", face.bbox, face.p_fake);
//! }
//! // An official checkpoint: say what its file cannot.
//! let official = fsvfm::Detector::load_with(
//!     "checkpoint-min_val_loss.pth",
//!     &fsvfm::DetectorOptions {
//!         model: Some(fsvfm::model_config("vit_base_patch16")?),
//!         mean_std: Some(fsvfm::mean_std_named("pretrain_ds_mean_std.txt")?),
//!         fake_index: Some(0),
//!         ..Default::default()
//!     },
//! )?;
//! # let _ = official;
//! # Ok(())
//! # }
//! ```

pub mod calibrate;
pub mod checkpoint;
mod detector;
mod encoder;
mod error;
pub mod fas;
pub mod heatmap;
pub mod transfer;

pub use checkpoint::{Described, MetadataSource, Network, describe, mean_std_named, model_config};
pub use detector::{Detector, DetectorOptions, EvalInputs, Face, FrameCrops};
pub use encoder::{Encoder, EncoderOptions};
pub use error::{Error, Result};
pub use fsvfm_train::sidecar::{
    Calibration, Legacy, ModelKind, OperatingPoint, ProducedBy, SIDECAR_FILE, SIDECAR_SCHEMA,
    Sidecar, Verdict,
};

pub use fsvfm_data as data;
pub use fsvfm_eval as eval;
pub use fsvfm_faces as faces;
pub use fsvfm_masking as masking;
pub use fsvfm_model as model;
pub use fsvfm_synth as synth;
pub use fsvfm_train as train;
pub use image;

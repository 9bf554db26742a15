//! # fsvfm-data
//!
//! Data formats and readers shared by the commands:
//! - [`npy`]: NumPy `.npy` arrays, the exchange format of `fsvfm forward` (inputs `[N, 3, H, W]`
//!   float32, outputs `[N, D]` / `[N, C]` float32) and of the official parsing maps
//!   (`int8 [1, 224, 224]`).
//! - [`image_io`]: images as `[3, S, S]` floats (bicubic resize, `ToTensor`), and the mean/std
//!   normalisation that travels with every checkpoint.
//! - [`pretrain_set`]: the pre-training dataset (official folder layout or JSONL manifest) and
//!   its mean/std.
//! - [`manifest`]: the one `manifest.jsonl` record and label type (`real | fake | attack`).
//! - [`eval_set`]: labelled test sets (ImageFolder, JSONL manifest, DeepfakeBench JSON).
//! - [`augment`]: the training augmentations of the transfer recipes (Pillow-exact resize and
//!   RandAugment ops, random erasing, Mixup/CutMix, the FAS colour jitter).
//! - [`tensors`]: f32 tensors of safetensors files (fixtures, exported weights).
//! - [`input`]: the bounded reader of every input file (regular files only, a size cap per kind,
//!   image headers checked before decoding) and folder walks that visit each real file once.
//! - [`outdir`]: output folders locked against a second writer, bounded temporary names, stale
//!   temporaries of killed runs removed.

pub mod atomic;
pub mod augment;
pub mod eval_set;
pub mod image_io;
pub mod input;
pub mod manifest;
pub mod npy;
pub mod outdir;
pub mod pretrain_set;
pub mod tensors;

pub use atomic::write_atomic;
pub use eval_set::{EvalSample, read_eval_set};
pub use image_io::{MeanStd, is_image_file, load_normalized, load_rgb, sorted_entries};
pub use manifest::{Label, ManifestLine, ManifestRecord, read_manifest, read_records};
pub use pretrain_set::{PretrainSample, Skipped, discover, mean_std};
pub use tensors::{F32Tensors, read_f32_safetensors};

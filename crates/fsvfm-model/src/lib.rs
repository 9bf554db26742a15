//! # fsvfm-model
//!
//! The FS-VFM / FSFM model family in burn, computing what the official PyTorch code computes
//! (`../shared/spec/method.md` §1, §6.0, §7, §8):
//!
//! - [`VisionTransformer`]: the downstream classifier (mean-pool + `fc_norm`, or cls + `norm`).
//! - [`FsfmPretrain`]: the online pre-training network (encoder, MAE pixel decoder with the shared
//!   D-width mask token, Siamese representation decoder, BYOL projector and predictor).
//! - [`TargetNetwork`]: the EMA target (encoder, representation decoder, projector).
//! - [`FsAdapterClassifier`]: the FS-Adapter on a frozen backbone.
//! - [`loss`]: the pre-training losses; [`checkpoint`]: official `.pth` / safetensors load and export.
//!
//! Parameter names are the official `state_dict` keys (timm naming), so official checkpoints load
//! without a mapping table. Conventions: images `[N, C, H, W]` already normalised; tokens
//! `[N, 1 + L, D]` with the cls token first; patch masks `[N, L]`, **1 = masked (removed)**.
//! The crate is pure: no files besides weight loading, no printing.

pub mod adapter;
pub mod bf16_gemm;
pub mod checkpoint;
pub mod config;
pub mod cpu_kernels;
pub mod fas;
pub mod layers;
pub mod loss;
pub mod mask;
pub mod pos_embed;
pub mod pretrain;
pub mod pth_writer;
mod repack;
pub mod train_ops;
pub mod vit;

pub use adapter::{AdapterOutput, FsAdapterClassifier};
pub use checkpoint::{CheckpointKind, LoadMode, LoadReport, WeightFile, WeightFormat};
pub use config::{AdapterConfig, PRESETS, PretrainConfig, VitConfig};
pub use fas::{FasClassifier, FasNorm};
pub use mask::PatchMask;
pub use pretrain::{FsfmPretrain, OnlineOutput, TargetNetwork};
pub use vit::VisionTransformer;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An invalid model configuration.
    #[error("invalid model config: {0}")]
    Config(String),
    /// An invalid patch mask.
    #[error("invalid patch mask: {0}")]
    Mask(String),
    /// A weight file that cannot be read or does not fit the model.
    #[error("{0}")]
    Checkpoint(String),
    /// An input of the wrong shape.
    #[error("bad input: {0}")]
    Input(String),
}

/// The CPU device every command uses by default: burn's `flex` backend (multi-threaded, SIMD).
pub fn cpu_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}

/// A device by name: `cpu`, or `cuda` / `cuda:N` in builds with the `cuda` feature.
pub fn device_by_name(name: &str) -> Result<burn::tensor::Device, ModelError> {
    match name {
        "cpu" => Ok(cpu_device()),
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let index = n
                .strip_prefix("cuda:")
                .map(|i| i.parse::<usize>())
                .transpose()
                .map_err(|_| {
                    ModelError::Config(format!("bad CUDA device '{n}': use cuda or cuda:N"))
                })?
                .unwrap_or(0);
            Ok(burn::tensor::Device::cuda(index))
        }
        n if n.starts_with("cuda") => Err(ModelError::Config(
            "this fsvfm was built without CUDA: rebuild with `--features cuda` (see README)".into(),
        )),
        n => Err(ModelError::Config(format!(
            "unknown device '{n}': use cpu or cuda[:N]"
        ))),
    }
}

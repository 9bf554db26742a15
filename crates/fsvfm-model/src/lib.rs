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
pub mod amx;
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

/// The device names of a `--device` list: comma-separated, where a bare index continues the
/// CUDA list before it (`cuda:0,1,2` = `cuda:0,cuda:1,cuda:2`, the and torchrun users'
/// spelling).
pub fn expand_device_list(list: &str) -> Result<Vec<String>, ModelError> {
    let mut out: Vec<String> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(ModelError::Config(format!(
                "empty entry in the device list '{list}'"
            )));
        }
        if entry.bytes().all(|b| b.is_ascii_digit()) {
            match out.last() {
                Some(prev) if prev.starts_with("cuda") => out.push(format!("cuda:{entry}")),
                _ => {
                    return Err(ModelError::Config(format!(
                        "'{entry}' in the device list '{list}': a bare index must follow a cuda device"
                    )));
                }
            }
        } else {
            out.push(entry.to_string());
        }
    }
    Ok(out)
}

/// The devices of a `--device` list ([`expand_device_list`], then [`device_by_name`] each).
pub fn devices_by_names(list: &str) -> Result<Vec<burn::tensor::Device>, ModelError> {
    expand_device_list(list)?
        .iter()
        .map(|n| device_by_name(n))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_expand_bare_indices_after_cuda() {
        assert_eq!(
            expand_device_list("cuda:0,1, 3").unwrap(),
            ["cuda:0", "cuda:1", "cuda:3"]
        );
        assert_eq!(expand_device_list("cpu,cpu").unwrap(), ["cpu", "cpu"]);
        assert!(expand_device_list("cpu,1").is_err());
        assert!(expand_device_list("2").is_err());
        assert!(expand_device_list("cpu,,cpu").is_err());
        assert_eq!(devices_by_names("cpu,cpu").unwrap().len(), 2);
        #[cfg(not(feature = "cuda"))]
        assert!(
            devices_by_names("cuda:0,1")
                .unwrap_err()
                .to_string()
                .contains("--features cuda")
        );
    }
}

//! [`Encoder`]: pooled FS-VFM features of face crops.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use fsvfm_data::MeanStd;
use fsvfm_eval::{AttentionAccumulator, AttentionStats};
use fsvfm_model::VitConfig;
use image::RgbImage;

use crate::checkpoint::{Described, Network, describe, open_model};
use crate::{Error, Result};

/// How an [`Encoder`] is loaded. `Default` suits our own checkpoints.
#[derive(Debug, Clone, Default)]
pub struct EncoderOptions {
    /// The architecture (overrides the sidecar's); see [`crate::model_config`].
    pub model: Option<VitConfig>,
    /// Input normalisation (overrides the sidecar's).
    pub mean_std: Option<MeanStd>,
    /// Compute device (default: the CPU).
    pub device: Option<Device>,
}

/// The encoder of any checkpoint (pre-training, fine-tuned, FS-Adapter, FAS): pooled features
/// `[N, D]` (mean of the patch tokens + `fc_norm`, or the normed cls token, as the file's
/// readout is), equal to timm's `forward_features` + pooling on the same weights.
pub struct Encoder {
    path: std::path::PathBuf,
    network: Network,
    described: Described,
    device: Device,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("path", &self.path)
            .field("described", &self.described)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Loads the encoder of a checkpoint we wrote (its `fsvfm.json` says the architecture).
    pub fn load(path: impl AsRef<Path>) -> Result<Encoder> {
        Self::load_with(path, &EncoderOptions::default())
    }

    /// Loads with `options` (official `.pth` files need `model`; `mean_std` is needed only by
    /// [`Encoder::features_of`]).
    pub fn load_with(path: impl AsRef<Path>, options: &EncoderOptions) -> Result<Encoder> {
        let path = path.as_ref();
        let wf = open_model(path)?;
        let described = describe(&wf, options.model.as_ref(), options.mean_std)?;
        let device = options
            .device
            .clone()
            .unwrap_or_else(fsvfm_model::cpu_device);
        let (network, _) =
            Network::load(&wf, described.model.clone(), described.fas_norm, &device)?;
        Ok(Encoder {
            path: path.to_path_buf(),
            network,
            described,
            device,
        })
    }

    /// Input side in pixels.
    pub fn input_size(&self) -> usize {
        self.described.model.img_size
    }

    /// Feature width D.
    pub fn dim(&self) -> usize {
        self.described.model.embed_dim
    }

    /// Checks `x = [N, 3, S, S]` (row-major, normalised, finite): `N`.
    fn check_input(&self, x: &[f32], what: &str) -> Result<usize> {
        let s = self.input_size();
        let per = 3 * s * s;
        if x.is_empty() || !x.len().is_multiple_of(per) {
            return Err(Error::Invalid(format!(
                "{what} need [N, 3, {s}, {s}] values, got {} (not a multiple of {per})",
                x.len()
            )));
        }
        if !x.iter().all(|v| v.is_finite()) {
            return Err(Error::Invalid(
                "the input holds NaN or infinite values".into(),
            ));
        }
        Ok(x.len() / per)
    }

    /// `n` images `x` that [`Self::check_input`] accepted, as a tensor `[n, 3, S, S]`.
    fn tensor(&self, x: &[f32], n: usize) -> Tensor<4> {
        let s = self.input_size();
        Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, 3, s, s]), &self.device)
    }

    /// Face crops resized to the input and normalised with the checkpoint's mean/std,
    /// `[N, 3, S, S]` row-major.
    fn crops_input(&self, crops: &[RgbImage]) -> Result<Vec<f32>> {
        let ms = self.described.require_mean_std(&self.path)?;
        let size = self.input_size() as u32;
        let mut x = Vec::new();
        for c in crops {
            let mut v = fsvfm_data::image_io::rgb_to_chw(&fsvfm_data::image_io::to_input_size(
                c.clone(),
                size,
            ));
            ms.apply(&mut v);
            x.extend(v);
        }
        Ok(x)
    }

    /// Features `[N, D]` (row-major) of normalised images `x = [N, 3, S, S]` (row-major).
    pub fn features(&self, x: &[f32]) -> Result<Vec<f32>> {
        let n = self.check_input(x, "features")?;
        self.network
            .features(self.tensor(x, n))
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Invalid(format!("reading features: {e:?}")))
    }

    /// Features of face crops: resized to the input, normalised with the checkpoint's mean/std.
    pub fn features_of(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .features(&self.crops_input(crops)?)?
            .chunks(self.dim())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// The mean attention distance and head-diversity KL of every block and head (FS-VFM
    /// Fig. 4; definitions in [`fsvfm_eval::attention`]) over normalised images
    /// `x = [N, 3, S, S]` (row-major), run `batch` images at a time.
    pub fn attention_stats(&self, x: &[f32], batch: usize) -> Result<AttentionStats> {
        self.check_input(x, "attention statistics")?;
        let cfg = &self.described.model;
        let grid = cfg.img_size / cfg.patch_size;
        let mut acc =
            AttentionAccumulator::new(cfg.depth, cfg.num_heads, grid, grid, cfg.patch_size)?;
        let per = 3 * cfg.img_size * cfg.img_size;
        // Checked once above; each chunk is whole images of it.
        for chunk in x.chunks(batch.max(1) * per) {
            let n = chunk.len() / per;
            let probs = self.network.attention_probs(self.tensor(chunk, n));
            for (block, probs) in probs.into_iter().enumerate() {
                let v = probs
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| Error::Invalid(format!("reading attention: {e:?}")))?;
                acc.add(block, &v, n)?;
            }
        }
        Ok(acc.finish()?)
    }

    /// [`Encoder::attention_stats`] of face crops, resized and normalised as
    /// [`Encoder::features_of`] does.
    pub fn attention_stats_of(&self, crops: &[RgbImage], batch: usize) -> Result<AttentionStats> {
        self.attention_stats(&self.crops_input(crops)?, batch)
    }

    /// The last block's class-token attention over the patches, heads averaged (FS-VFM Fig. 5),
    /// of normalised images `x = [N, 3, S, S]` (row-major), run `batch` images at a time: per
    /// image `L = (S / patch)²` values in raster order, summing to below 1 (the class token's
    /// attention to itself is left out).
    pub fn attention_maps(&self, x: &[f32], batch: usize) -> Result<Vec<Vec<f32>>> {
        let n = self.check_input(x, "attention maps")?;
        let per = x.len() / n;
        let mut out = Vec::with_capacity(n);
        for chunk in x.chunks(batch.max(1) * per) {
            out.extend(
                self.network
                    .attention_maps(self.tensor(chunk, chunk.len() / per))?,
            );
        }
        Ok(out)
    }

    /// [`Encoder::attention_maps`] of face crops, resized and normalised as
    /// [`Encoder::features_of`] does.
    pub fn attention_maps_of(&self, crops: &[RgbImage], batch: usize) -> Result<Vec<Vec<f32>>> {
        self.attention_maps(&self.crops_input(crops)?, batch)
    }
}

//! Model configurations with timm field names, and the presets of the papers.
//!
//! Field names follow timm's `VisionTransformer` keyword arguments so that a `config.json` written for
//! timm reads here unchanged (`img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio,
//! num_classes, global_pool, drop_path_rate`).

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Configuration of the ViT encoder and its classifier readout (spec §1.1, §6.0).
///
/// Shapes: an input image `[N, in_chans, img_size, img_size]` becomes `L = (img_size / patch_size)²`
/// patch tokens of width `embed_dim`, plus one cls token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Square input side in pixels (224 in every official recipe).
    #[serde(default = "default_img_size")]
    pub img_size: usize,
    /// Square patch side in pixels; must divide `img_size`.
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// Input channels (3 for RGB).
    #[serde(default = "default_in_chans")]
    pub in_chans: usize,
    /// Token width D.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; must divide `embed_dim`.
    pub num_heads: usize,
    /// Hidden width of the MLP as a multiple of `embed_dim`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Classes of the linear head; 0 means no head (`forward_head` returns the pooled features).
    /// Face-security heads have 2 classes.
    #[serde(default = "default_num_classes")]
    pub num_classes: usize,
    /// `true`: mean of the patch tokens (cls excluded) followed by `fc_norm` (the official default);
    /// `false`: the cls token after the final `norm`. Also read as timm and its hub `config.json`
    /// write it: `"avg"` = `true`; `"token"` and `""` = `false` (timm's `""` returns the unpooled
    /// tokens; the closest readout here is the normed cls token). Written as a boolean.
    #[serde(default = "default_true", deserialize_with = "global_pool_field")]
    pub global_pool: bool,
    /// Stochastic depth rate of the last block; block `i` uses `rate * i / (depth - 1)` (timm rule).
    /// Only active on an autodiff device.
    #[serde(default)]
    pub drop_path_rate: f64,
}

fn default_img_size() -> usize {
    224
}
fn default_patch_size() -> usize {
    16
}
fn default_in_chans() -> usize {
    3
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_num_classes() -> usize {
    2
}
fn default_true() -> bool {
    true
}

/// `global_pool` as a boolean (the official `models_vit.py`) or a timm string.
fn global_pool_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Pool {
        Flag(bool),
        Name(String),
    }
    match Pool::deserialize(d)? {
        Pool::Flag(b) => Ok(b),
        Pool::Name(n) => match n.as_str() {
            "avg" => Ok(true),
            "token" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "global_pool {other:?}: this ViT reads \"avg\" (mean of patch tokens + fc_norm), \"token\" or \"\" (cls token + norm), or a boolean"
            ))),
        },
    }
}

/// Names accepted by [`VitConfig::preset`], in size order.
pub const PRESETS: [&str; 5] = [
    "vit_tiny_patch16",
    "vit_small_patch16",
    "vit_base_patch16",
    "vit_large_patch16",
    "vit_huge_patch14",
];

impl VitConfig {
    /// A 224-pixel, 2-class, mean-pooled ViT of the given size.
    pub fn new(patch_size: usize, embed_dim: usize, depth: usize, num_heads: usize) -> Self {
        Self {
            img_size: 224,
            patch_size,
            in_chans: 3,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            num_classes: 2,
            global_pool: true,
            drop_path_rate: 0.0,
        }
    }

    /// The paper's sizes. ViT-S uses **12 heads** (head dim 32, the MoCo-v3 ViT-S), not timm's 6;
    /// `vit_tiny_patch16` (192/12/3) is ours, for the CPU demo. A leading `fsfm_` is accepted, so
    /// the official model names (`fsfm_vit_base_patch16`) work too.
    pub fn preset(name: &str) -> Option<Self> {
        let name = name.strip_prefix("fsfm_").unwrap_or(name);
        Some(match name {
            "vit_tiny_patch16" => Self::new(16, 192, 12, 3),
            "vit_small_patch16" => Self::new(16, 384, 12, 12),
            "vit_base_patch16" => Self::new(16, 768, 12, 12),
            "vit_large_patch16" => Self::new(16, 1024, 24, 16),
            "vit_huge_patch14" => Self::new(14, 1280, 32, 16),
            _ => return None,
        })
    }

    /// Patch grid side (`img_size / patch_size`).
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size
    }

    /// Number of patch tokens L.
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// MLP hidden width (`embed_dim * mlp_ratio`, truncated as timm's `int()`).
    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Checks the invariants the modules rely on.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.patch_size == 0
            || self.img_size == 0
            || !self.img_size.is_multiple_of(self.patch_size)
        {
            return bad(format!(
                "img_size {} must be a positive multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if self.embed_dim == 0
            || self.num_heads == 0
            || !self.embed_dim.is_multiple_of(self.num_heads)
        {
            return bad(format!(
                "embed_dim {} must be a positive multiple of num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if !self.embed_dim.is_multiple_of(4) {
            return bad(format!(
                "embed_dim {} must be a multiple of 4 (2-D sin-cos position embedding)",
                self.embed_dim
            ));
        }
        if self.in_chans == 0 || self.depth == 0 || self.mlp_hidden() == 0 {
            return bad("in_chans, depth and mlp hidden width must be positive".into());
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(format!(
                "drop_path_rate {} must be in [0, 1)",
                self.drop_path_rate
            ));
        }
        Ok(())
    }

    /// Per-block drop-path rates, linearly increasing from 0 (timm `torch.linspace(0, rate, depth)`).
    pub fn drop_path_rates(&self) -> Vec<f64> {
        if self.depth <= 1 {
            return vec![0.0; self.depth];
        }
        (0..self.depth)
            .map(|i| self.drop_path_rate * i as f64 / (self.depth - 1) as f64)
            .collect()
    }
}

/// Configuration of the FS-VFM pre-training model: the encoder plus the MAE pixel decoder, the
/// Siamese representation decoder and the BYOL projector/predictor (spec §1.2–1.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// The encoder (its `num_classes`, `global_pool` and `drop_path_rate` are unused here).
    pub encoder: VitConfig,
    /// Pixel-decoder width (512 in every official model).
    #[serde(default = "default_decoder_dim")]
    pub decoder_embed_dim: usize,
    /// Pixel-decoder depth (8).
    #[serde(default = "default_decoder_depth")]
    pub decoder_depth: usize,
    /// Pixel-decoder heads (16).
    #[serde(default = "default_16")]
    pub decoder_num_heads: usize,
    /// Representation-decoder depth (2 for every size).
    #[serde(default = "default_rep_depth")]
    pub rep_decoder_depth: usize,
    /// Representation-decoder heads (16 for every size); must divide `embed_dim`.
    #[serde(default = "default_16")]
    pub rep_decoder_num_heads: usize,
    /// Output width of projector and predictor (256).
    #[serde(default = "default_projection_size")]
    pub projection_size: usize,
    /// Hidden width of projector and predictor (4096).
    #[serde(default = "default_projection_hidden")]
    pub projection_hidden_size: usize,
    /// Normalise each target patch by its own mean/variance before the pixel loss (on in every recipe).
    #[serde(default = "default_true")]
    pub norm_pix_loss: bool,
}

fn default_decoder_dim() -> usize {
    512
}
fn default_decoder_depth() -> usize {
    8
}
fn default_16() -> usize {
    16
}
fn default_rep_depth() -> usize {
    2
}
fn default_projection_size() -> usize {
    256
}
fn default_projection_hidden() -> usize {
    4096
}

/// The keyword arguments of the official `models_fsfm.FSFMViT` constructor, flat, with its
/// defaults (which are ViT-L's encoder, `dec512d8b`, a 768-wide 2-block representation decoder
/// with 16 heads, BYOL 4096 → 256, `norm_pix_loss=False`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfficialKwargs {
    #[serde(default = "default_img_size")]
    img_size: usize,
    #[serde(default = "default_patch_size")]
    patch_size: usize,
    #[serde(default = "default_in_chans")]
    in_chans: usize,
    #[serde(default = "official_embed_dim")]
    embed_dim: usize,
    #[serde(default = "official_depth")]
    depth: usize,
    #[serde(default = "default_16")]
    num_heads: usize,
    #[serde(default = "default_decoder_dim")]
    decoder_embed_dim: usize,
    #[serde(default = "default_decoder_depth")]
    decoder_depth: usize,
    #[serde(default = "default_16")]
    decoder_num_heads: usize,
    #[serde(default = "default_projection_size")]
    projection_size: usize,
    #[serde(default = "default_projection_hidden")]
    projection_hidden_size: usize,
    #[serde(default = "official_rep_dim")]
    rep_decoder_embed_dim: usize,
    #[serde(default = "default_rep_depth")]
    rep_decoder_depth: usize,
    #[serde(default = "default_16")]
    rep_decoder_num_heads: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    #[serde(default)]
    norm_pix_loss: bool,
}

fn official_embed_dim() -> usize {
    1024
}
fn official_depth() -> usize {
    24
}
fn official_rep_dim() -> usize {
    768
}

impl PretrainConfig {
    /// A pre-training model config from JSON: ours (`{"encoder": {…}, "decoder_embed_dim": …}`)
    /// or the official `models_fsfm.FSFMViT` constructor keywords, flat (`{"embed_dim": 384,
    /// "depth": 12, "num_heads": 12, "rep_decoder_embed_dim": 384, …}`, unset keywords taking
    /// the constructor's defaults).
    ///
    /// A representation decoder of another width than the encoder (`rep_decoder_embed_dim ≠
    /// embed_dim`, which the official model supports) is refused with an error saying so: our
    /// networks give the representation decoder the encoder's width.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let bad =
            |e: serde_json::Error| ModelError::Config(format!("pre-training model JSON: {e}"));
        let v: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        if v.get("encoder").is_some() {
            return serde_json::from_value(v).map_err(bad);
        }
        let k: OfficialKwargs = serde_json::from_value(v).map_err(bad)?;
        if k.rep_decoder_embed_dim != k.embed_dim {
            return Err(ModelError::Config(format!(
                "rep_decoder_embed_dim {} ≠ embed_dim {}: a representation decoder of another width than the encoder is not supported yet (set rep_decoder_embed_dim = embed_dim)",
                k.rep_decoder_embed_dim, k.embed_dim
            )));
        }
        let mut encoder = VitConfig::new(k.patch_size, k.embed_dim, k.depth, k.num_heads);
        encoder.img_size = k.img_size;
        encoder.in_chans = k.in_chans;
        encoder.mlp_ratio = k.mlp_ratio;
        let cfg = PretrainConfig {
            encoder,
            decoder_embed_dim: k.decoder_embed_dim,
            decoder_depth: k.decoder_depth,
            decoder_num_heads: k.decoder_num_heads,
            rep_decoder_depth: k.rep_decoder_depth,
            rep_decoder_num_heads: k.rep_decoder_num_heads,
            projection_size: k.projection_size,
            projection_hidden_size: k.projection_hidden_size,
            norm_pix_loss: k.norm_pix_loss,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The official decoders (`dec512d8b`, rep decoder depth 2 / 16 heads, BYOL 4096 → 256) around `encoder`.
    pub fn new(encoder: VitConfig) -> Self {
        Self {
            encoder,
            decoder_embed_dim: 512,
            decoder_depth: 8,
            decoder_num_heads: 16,
            rep_decoder_depth: 2,
            rep_decoder_num_heads: 16,
            projection_size: 256,
            projection_hidden_size: 4096,
            norm_pix_loss: true,
        }
    }

    /// `fsfm_vit_{small,base,large}_patch16` (and our tiny / huge) with the official decoders.
    /// The tiny preset's 192-wide rep decoder uses 16 heads of 12 like the others.
    pub fn preset(name: &str) -> Option<Self> {
        VitConfig::preset(name).map(Self::new)
    }

    /// Pixel values predicted per patch (`patch_size² · in_chans`).
    pub fn patch_dim(&self) -> usize {
        self.encoder.patch_size * self.encoder.patch_size * self.encoder.in_chans
    }

    /// Checks the invariants the modules rely on.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.encoder.validate()?;
        let e = &self.encoder;
        let checks = [
            (
                self.decoder_embed_dim,
                self.decoder_num_heads,
                "decoder_embed_dim",
                "decoder_num_heads",
            ),
            (
                e.embed_dim,
                self.rep_decoder_num_heads,
                "embed_dim",
                "rep_decoder_num_heads",
            ),
        ];
        for (dim, heads, dn, hn) in checks {
            if heads == 0 || !dim.is_multiple_of(heads) {
                return Err(ModelError::Config(format!(
                    "{dn} {dim} must be a multiple of {hn} {heads}"
                )));
            }
        }
        if !self.decoder_embed_dim.is_multiple_of(4) {
            return Err(ModelError::Config(format!(
                "decoder_embed_dim {} must be a multiple of 4 (2-D sin-cos position embedding)",
                self.decoder_embed_dim
            )));
        }
        if self.decoder_depth == 0 || self.rep_decoder_depth == 0 {
            return Err(ModelError::Config("decoder depths must be positive".into()));
        }
        if self.projection_size == 0 || self.projection_hidden_size == 0 {
            return Err(ModelError::Config(
                "projection sizes must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Configuration of the FS-Adapter classifier (spec §7): a frozen mean-pooled ViT, a bottleneck
/// adapter `D → D/r → D` (no biases, ReLU after both), a projector on the bottleneck, and a head
/// on `concat[h, adapter(h)]` (`2D → num_classes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// The backbone; `global_pool` must be `true` (the official adapter reads `fc_norm(GAP)`).
    pub backbone: VitConfig,
    /// Bottleneck reduction r (4 in every recipe).
    #[serde(default = "default_reduction")]
    pub reduction: usize,
}

fn default_reduction() -> usize {
    4
}

impl AdapterConfig {
    /// The official adapter (reduction 4) on `backbone`.
    pub fn new(backbone: VitConfig) -> Self {
        Self {
            backbone,
            reduction: 4,
        }
    }

    /// Bottleneck width `D / r`.
    pub fn bottleneck(&self) -> usize {
        self.backbone.embed_dim / self.reduction
    }

    /// Checks the invariants the modules rely on.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.backbone.validate()?;
        if !self.backbone.global_pool {
            return Err(ModelError::Config(
                "the FS-Adapter reads the mean-pooled feature: backbone.global_pool must be true"
                    .into(),
            ));
        }
        if self.backbone.num_classes == 0 {
            return Err(ModelError::Config(
                "the FS-Adapter needs num_classes > 0".into(),
            ));
        }
        if self.reduction == 0 || self.bottleneck() == 0 {
            return Err(ModelError::Config(format!(
                "reduction {} leaves no bottleneck for embed_dim {}",
                self.reduction, self.backbone.embed_dim
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_paper_sizes() {
        let s = VitConfig::preset("vit_small_patch16").unwrap();
        assert_eq!((s.embed_dim, s.depth, s.num_heads), (384, 12, 12));
        let l = VitConfig::preset("fsfm_vit_large_patch16").unwrap();
        assert_eq!(
            (l.embed_dim, l.depth, l.num_heads, l.num_patches()),
            (1024, 24, 16, 196)
        );
        assert!(VitConfig::preset("vit_giant").is_none());
        for name in PRESETS {
            VitConfig::preset(name).unwrap().validate().unwrap();
            PretrainConfig::preset(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn config_json_uses_timm_names_and_defaults() {
        let c: VitConfig = serde_json::from_str(
            r#"{"embed_dim": 64, "depth": 2, "num_heads": 4, "img_size": 32, "patch_size": 8}"#,
        )
        .unwrap();
        assert_eq!(
            (c.in_chans, c.num_classes, c.global_pool, c.mlp_ratio),
            (3, 2, true, 4.0)
        );
        assert_eq!(c.num_patches(), 16);
        assert!(
            serde_json::from_str::<VitConfig>(
                r#"{"embed_dim": 64, "depth": 2, "num_heads": 4, "heads": 1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn pretrain_json_reads_the_official_constructor_keywords() {
        let ours = PretrainConfig::preset("vit_small_patch16").unwrap();
        let nested = serde_json::to_string(&ours).unwrap();
        assert_eq!(PretrainConfig::from_json(&nested).unwrap(), ours);
        // fsfm_vit_small_patch16 as the official code builds it.
        let flat = r#"{"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 12,
            "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16,
            "rep_decoder_embed_dim": 384, "rep_decoder_depth": 2, "rep_decoder_num_heads": 16,
            "projection_size": 256, "projection_hidden_size": 4096, "mlp_ratio": 4,
            "norm_pix_loss": true}"#;
        assert_eq!(PretrainConfig::from_json(flat).unwrap(), ours);
        // The constructor's defaults: ViT-L with a 768-wide representation decoder, refused by name.
        let e = PretrainConfig::from_json("{}").unwrap_err().to_string();
        assert!(
            e.contains("rep_decoder_embed_dim 768") && e.contains("embed_dim 1024"),
            "{e}"
        );
        let e = PretrainConfig::from_json(r#"{"embed_dim": 64, "depht": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("depht"), "{e}");
    }

    #[test]
    fn global_pool_reads_timm_strings_and_booleans() {
        let read = |v: &str| {
            serde_json::from_str::<VitConfig>(&format!(
                r#"{{"embed_dim": 64, "depth": 2, "num_heads": 4, "global_pool": {v}}}"#
            ))
            .map(|c| c.global_pool)
        };
        assert!(read(r#""avg""#).unwrap());
        assert!(!read(r#""token""#).unwrap());
        assert!(!read(r#""""#).unwrap());
        assert!(read("true").unwrap());
        assert!(!read("false").unwrap());
        let e = read(r#""map""#).unwrap_err().to_string();
        assert!(e.contains("\"map\"") && e.contains("avg"), "{e}");
        // Written back as a boolean, which the official code and older fsvfm read.
        let c: VitConfig = serde_json::from_str(
            r#"{"embed_dim": 64, "depth": 2, "num_heads": 4, "global_pool": "token"}"#,
        )
        .unwrap();
        assert!(
            serde_json::to_string(&c)
                .unwrap()
                .contains("\"global_pool\":false")
        );
    }

    #[test]
    fn invalid_configs_are_rejected_with_reasons() {
        let mut c = VitConfig::new(16, 384, 12, 12);
        c.img_size = 225;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("multiple of patch_size")
        );
        let c = VitConfig::new(16, 384, 12, 7);
        assert!(c.validate().unwrap_err().to_string().contains("num_heads"));
        let mut p = PretrainConfig::new(VitConfig::new(16, 192, 2, 3));
        p.rep_decoder_num_heads = 5;
        assert!(p.validate().is_err());
    }

    #[test]
    fn drop_path_rates_follow_linspace() {
        let mut c = VitConfig::new(16, 64, 5, 4);
        c.drop_path_rate = 0.1;
        let r = c.drop_path_rates();
        assert_eq!(r.len(), 5);
        assert!(
            (r[0] - 0.0).abs() < 1e-12 && (r[4] - 0.1).abs() < 1e-12 && (r[2] - 0.05).abs() < 1e-12
        );
    }
}

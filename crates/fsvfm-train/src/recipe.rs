//! Pre-training recipes (spec §5): TOML files or named presets.
//!
//! A TOML file may start from a preset with `base = "tiny"` and override any field; without
//! `base` it must give every field. The resolved recipe is written next to every run.

use fsvfm_masking::Strategy;
use fsvfm_model::{PretrainConfig, VitConfig};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::optim::AdamWSettings;
use crate::schedule::LrSchedule;

/// Everything a pre-training run needs besides data and output paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainRecipe {
    /// Name for logs.
    pub name: String,
    /// The networks.
    pub model: PretrainConfig,
    /// Epochs.
    pub epochs: usize,
    /// Images per micro-step per device (the official `--batch_size`, per GPU).
    pub batch_size: usize,
    /// Micro-steps per optimiser update.
    pub accum_iter: usize,
    /// Base learning rate; `lr = blr · batch_size · accum_iter · world_size / 256` unless `lr` is
    /// set.
    pub blr: f64,
    /// Absolute learning rate (overrides `blr`).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Linear warmup, in epochs.
    pub warmup_epochs: f64,
    /// AdamW settings.
    pub optimizer: AdamWSettings,
    /// Global grad-norm clip (`None` = off, as in the CVPR run).
    #[serde(default)]
    pub clip_grad: Option<f64>,
    /// EMA momentum at the start (cosine to 1).
    pub t_momentum: f64,
    /// Fraction of patches masked.
    pub mask_ratio: f64,
    /// Masking strategy (`crfr-p` in every released model).
    pub strategy: Strategy,
    /// Force one covered region (e.g. `"eyes"`), for ablations; default: drawn per batch.
    #[serde(default)]
    pub region: Option<String>,
    /// Seed of initialisation, data order and masks.
    pub seed: u64,
    /// Write `checkpoint-<epoch>` every this many epochs (and after the last).
    pub save_every: usize,
    /// Write a reconstruction picture every this many epochs (0 = never).
    #[serde(default)]
    pub recon_every: usize,
    /// Stop with an error after this many consecutive non-finite batches.
    pub max_nonfinite: usize,
    /// Weight of the covered-region reconstruction loss (0.007 in every recipe; 0 for the MAE
    /// ablation).
    #[serde(default = "default_weight_region")]
    pub weight_region: f64,
    /// Weight of the instance-discrimination loss (0.1 in every recipe; 0 drops the ID branch: the
    /// target network is then not run).
    #[serde(default = "default_weight_sim")]
    pub weight_sim: f64,
    /// Data-parallel workers (one per device of `--device`): each micro-step takes
    /// `batch_size · world_size` images. Set when a run starts and kept on resume, since the
    /// learning rate and the steps per epoch depend on it.
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

fn default_weight_region() -> f64 {
    fsvfm_model::loss::WEIGHT_REGION
}

fn default_weight_sim() -> f64 {
    fsvfm_model::loss::WEIGHT_SIM
}

/// Names accepted by [`PretrainRecipe::preset`].
pub const RECIPES: [&str; 5] = [
    "tiny",
    "fsfm_vit_base",
    "fsvfm_vit_small",
    "fsvfm_vit_base",
    "fsvfm_vit_large",
];

impl PretrainRecipe {
    /// The paper's recipes (spec §5: effective batch 4096 = `batch_size · accum_iter` on one
    /// device, blr 1.5e-4, warmup 40, cosine to 0, AdamW (0.9, 0.95) wd 0.05, ratio 0.75 CRFR-P,
    /// momentum 0.996; clip 1.0 for FS-VFM, none for the CVPR FSFM run), and `tiny`: a ViT with
    /// 4 blocks of width 192 on 112-pixel faces that trains in minutes on a 2-core CPU.
    pub fn preset(name: &str) -> Option<Self> {
        let paper = |name: &str, encoder: &str, epochs: usize, clip: Option<f64>| Self {
            name: name.into(),
            model: PretrainConfig::preset(encoder).expect("known encoder preset"),
            epochs,
            batch_size: 256,
            accum_iter: 16,
            blr: 1.5e-4,
            lr: None,
            min_lr: 0.0,
            warmup_epochs: 40.0,
            optimizer: AdamWSettings::default(),
            clip_grad: clip,
            t_momentum: 0.996,
            mask_ratio: 0.75,
            strategy: Strategy::CrfrP,
            region: None,
            seed: 0,
            save_every: 20,
            recon_every: 20,
            max_nonfinite: 20,
            weight_region: default_weight_region(),
            weight_sim: default_weight_sim(),
            world_size: 1,
        };
        Some(match name {
            "fsfm_vit_base" => paper(name, "vit_base_patch16", 400, None),
            "fsvfm_vit_small" => paper(name, "vit_small_patch16", 600, Some(1.0)),
            "fsvfm_vit_base" => paper(name, "vit_base_patch16", 600, Some(1.0)),
            "fsvfm_vit_large" => paper(name, "vit_large_patch16", 600, Some(1.0)),
            "tiny" => {
                let mut encoder = VitConfig::new(16, 192, 4, 3);
                encoder.img_size = 112;
                let mut model = PretrainConfig::new(encoder);
                model.decoder_embed_dim = 128;
                model.decoder_depth = 2;
                model.decoder_num_heads = 4;
                model.projection_hidden_size = 1024;
                Self {
                    model,
                    epochs: 30,
                    batch_size: 16,
                    accum_iter: 1,
                    lr: Some(1e-3),
                    warmup_epochs: 3.0,
                    clip_grad: Some(1.0),
                    save_every: 5,
                    recon_every: 5,
                    ..paper("tiny", "vit_tiny_patch16", 30, Some(1.0))
                }
            }
            _ => return None,
        })
    }

    /// A preset name, or a TOML file (optionally `base = "<preset>"` plus overrides).
    pub fn load(name_or_path: &str) -> Result<Self, TrainError> {
        load_named(name_or_path, Self::preset, &RECIPES, Self::from_toml)
    }

    /// Parses a recipe from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let r: Self = from_toml_with_base(text, Self::preset, &RECIPES)?;
        r.validate()?;
        Ok(r)
    }

    /// The recipe as TOML (what [`PretrainRecipe::from_toml`] reads back).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks values the loop relies on.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate().map_err(|e| e.to_string())?;
        if self.epochs == 0
            || self.batch_size == 0
            || self.accum_iter == 0
            || self.save_every == 0
            || self.world_size == 0
        {
            return Err(
                "epochs, batch_size, accum_iter, save_every and world_size must be positive".into(),
            );
        }
        // NaN passes every comparison, so each rate is checked for what it must be, not against
        // what it must not: a NaN learning rate trains every weight to NaN.
        let rates = [
            ("blr", self.blr),
            ("lr", self.lr.unwrap_or(self.blr)),
            ("min_lr", self.min_lr),
            ("warmup_epochs", self.warmup_epochs),
            ("weight_decay", self.optimizer.weight_decay),
        ];
        for (name, v) in rates {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be a finite number ≥ 0, got {v}"));
            }
        }
        if self.lr.unwrap_or(self.blr) <= 0.0 {
            return Err("the learning rate (lr, or blr) must be above 0".into());
        }
        if !(0.0..1.0).contains(&self.mask_ratio) {
            return Err(format!("mask_ratio {} must be in [0, 1)", self.mask_ratio));
        }
        if !(0.0..=1.0).contains(&self.t_momentum) {
            return Err(format!("t_momentum {} must be in [0, 1]", self.t_momentum));
        }
        if !(self.weight_region >= 0.0 && self.weight_sim >= 0.0) {
            return Err(format!(
                "weight_region {} and weight_sim {} must be non-negative",
                self.weight_region, self.weight_sim
            ));
        }
        if let Some(r) = &self.region {
            r.parse::<fsvfm_masking::Region>()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The loss weights as the model crate takes them.
    pub fn loss_weights(&self) -> fsvfm_model::loss::LossWeights {
        fsvfm_model::loss::LossWeights {
            region: self.weight_region,
            sim: self.weight_sim,
        }
    }

    /// Images per optimiser update, over all devices.
    pub fn effective_batch(&self) -> usize {
        self.batch_size * self.accum_iter * self.world_size
    }

    /// Images per micro-step, over all devices.
    pub fn global_batch(&self) -> usize {
        self.batch_size * self.world_size
    }

    /// The peak learning rate (`lr`, or `blr · effective batch / 256`).
    pub fn peak_lr(&self) -> f64 {
        self.lr
            .unwrap_or(self.blr * self.effective_batch() as f64 / 256.0)
    }

    /// The learning-rate schedule.
    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            lr: self.peak_lr(),
            min_lr: self.min_lr,
            warmup_epochs: self.warmup_epochs,
            epochs: self.epochs as f64,
        }
    }
}

/// `preset(name_or_path)`, or else the TOML file at that path parsed by `parse`; errors name the
/// known presets.
pub(crate) fn load_named<T>(
    name_or_path: &str,
    preset: impl Fn(&str) -> Option<T>,
    names: &[&str],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, TrainError> {
    if let Some(r) = preset(name_or_path) {
        return Ok(r);
    }
    let path = std::path::Path::new(name_or_path);
    if !path.exists() {
        return Err(TrainError::Config(format!(
            "'{name_or_path}' is neither a recipe ({}) nor a TOML file",
            names.join(", ")
        )));
    }
    let text = fsvfm_data::input::read_to_string(path).map_err(crate::io_error(path))?;
    parse(&text).map_err(|e| TrainError::Config(format!("{name_or_path}: {e}")))
}

/// Deserialises TOML text that may start from a preset (`base = "<name>"`, then overrides merged
/// over the preset's own TOML) or give every field.
pub(crate) fn from_toml_with_base<T: Serialize + serde::de::DeserializeOwned>(
    text: &str,
    preset: impl Fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<T, String> {
    let mut table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let merged = match table.remove("base") {
        Some(toml::Value::String(base)) => {
            let preset = preset(&base)
                .ok_or_else(|| format!("unknown base recipe '{base}' ({})", names.join(", ")))?;
            let mut v = toml::Table::try_from(&preset).map_err(|e| e.to_string())?;
            merge(&mut v, table);
            v
        }
        Some(_) => return Err("`base` must be a recipe name".into()),
        None => table,
    };
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e| format!("{e}"))
}

/// Recursive table merge: values of `over` replace those of `base`, sub-tables merge.
pub(crate) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_through_toml() {
        for name in RECIPES {
            let r = PretrainRecipe::preset(name).unwrap();
            r.validate().unwrap();
            assert_eq!(
                PretrainRecipe::from_toml(&r.to_toml()).unwrap(),
                r,
                "{name}"
            );
        }
        let b = PretrainRecipe::preset("fsvfm_vit_base").unwrap();
        assert_eq!(b.effective_batch(), 4096);
        assert!((b.peak_lr() - 2.4e-3).abs() < 1e-12);
        assert_eq!(
            PretrainRecipe::preset("fsfm_vit_base").unwrap().clip_grad,
            None
        );
    }

    #[test]
    fn non_finite_or_negative_rates_are_refused() {
        let base = PretrainRecipe::preset(RECIPES[0]).unwrap();
        for v in [f64::NAN, f64::INFINITY, -1.0] {
            let mut r = base.clone();
            r.lr = Some(v);
            let e = r.validate().unwrap_err();
            assert!(e.contains("lr must be a finite number ≥ 0"), "{v}: {e}");
            let mut r = base.clone();
            r.optimizer.weight_decay = v;
            assert!(r.validate().unwrap_err().contains("weight_decay"));
        }
        let mut r = base.clone();
        r.lr = Some(0.0);
        assert!(r.validate().unwrap_err().contains("above 0"));
        assert!(
            PretrainRecipe::from_toml("base = \"tiny\"\nblr = nan\n")
                .unwrap_err()
                .to_string()
                .contains("blr")
        );
    }

    #[test]
    fn base_plus_overrides() {
        let r = PretrainRecipe::from_toml(
            "base = \"tiny\"\nepochs = 2\nstrategy = \"random\"\n[model.encoder]\ndepth = 2\n",
        )
        .unwrap();
        assert_eq!(r.epochs, 2);
        assert_eq!(r.strategy, Strategy::Random);
        assert_eq!(r.model.encoder.depth, 2);
        assert_eq!(r.model.encoder.embed_dim, 192);
        assert!(PretrainRecipe::from_toml("base = \"tiny\"\nepochs = 0\n").is_err());
        assert!(PretrainRecipe::from_toml("base = \"tiny\"\nepoch = 3\n").is_err());
        assert!(PretrainRecipe::from_toml("base = \"nope\"\n").is_err());
        assert!(PretrainRecipe::from_toml("base = \"tiny\"\nregion = \"ears\"\n").is_err());
    }
}

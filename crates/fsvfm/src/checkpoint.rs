//! Opening checkpoints: what a weight file holds ([`Network`]), and what its sidecar says
//! ([`describe`]), with the previous release's files as a migration path and no silent defaults.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use fsvfm_data::MeanStd;
use fsvfm_model::{
    AdapterConfig, CheckpointKind, FasClassifier, FasNorm, FsAdapterClassifier, LoadMode,
    VisionTransformer, VitConfig, WeightFile,
};
use fsvfm_train::sidecar::{Calibration, Legacy, ModelKind, SIDECAR_FILE, Sidecar};

use crate::{Error, Result};

/// An architecture by name: a preset (`vit_small_patch16`, …; see [`fsvfm_model::PRESETS`]) or a
/// JSON file with timm's field names (a pre-training model's JSON, ours or the official
/// constructor keywords, gives its encoder).
pub fn model_config(name: &str) -> Result<VitConfig> {
    if let Some(cfg) = VitConfig::preset(name) {
        return Ok(cfg);
    }
    let path = PathBuf::from(name);
    if !path.is_file() {
        return Err(Error::Invalid(format!(
            "unknown model '{name}': use a preset ({}) or a JSON config file",
            fsvfm_model::PRESETS.join(", ")
        )));
    }
    let text = fsvfm_data::input::read_to_string(&path).map_err(|e| Error::Input {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    match serde_json::from_str::<VitConfig>(&text) {
        Ok(cfg) => Ok(cfg),
        // A pre-training model's JSON (ours, or the official constructor keywords): its encoder.
        Err(e) => fsvfm_model::PretrainConfig::from_json(&text)
            .map(|p| p.encoder)
            .map_err(|pe| Error::Input {
                path,
                reason: format!("not a model config: {e} (nor a pre-training one: {pe})"),
            }),
    }
}

/// A normalisation by name: `vggface2` (the official default) or a `pretrain_ds_mean_std.txt`.
pub fn mean_std_named(name: &str) -> Result<MeanStd> {
    if name.eq_ignore_ascii_case("vggface2") {
        return Ok(MeanStd::VGGFACE2);
    }
    MeanStd::read(Path::new(name)).map_err(|reason| Error::Input {
        path: name.into(),
        reason,
    })
}

/// The network a weight file holds, loaded.
pub enum Network {
    /// A ViT classifier, or the encoder of a pre-training checkpoint (no head).
    Vit(Box<VisionTransformer>),
    /// An FS-Adapter classifier.
    Adapter(Box<FsAdapterClassifier>),
    /// A face anti-spoofing classifier.
    Fas(Box<FasClassifier>),
}

impl Network {
    /// Builds the network `wf` holds for encoder `cfg` and loads it: strictly for classifiers and
    /// adapters; for pre-training checkpoints only the encoder, as the official fine-tuning does
    /// (`strict=False`, fresh identity `fc_norm`). The class count comes from `head.weight`, the
    /// readout (mean pool vs cls) from `fc_norm` vs `norm`. Returns a description of what was
    /// loaded.
    pub fn load(
        wf: &WeightFile,
        mut cfg: VitConfig,
        fas_norm: FasNorm,
        device: &Device,
    ) -> Result<(Network, String)> {
        cfg.drop_path_rate = 0.0;
        let shapes = wf.shapes();
        match wf.kind() {
            CheckpointKind::Pretrain | CheckpointKind::Target => {
                cfg.global_pool = true;
                cfg.num_classes = 0;
                let (m, report) = load_encoder(wf, &cfg, device)?;
                Ok((
                    Network::Vit(Box::new(m)),
                    format!("encoder of a pre-training checkpoint ({report})"),
                ))
            }
            CheckpointKind::Adapter => {
                if let Some(s) = shapes.get("head.weight") {
                    cfg.num_classes = s[0];
                }
                let acfg = AdapterConfig::new(cfg);
                acfg.validate()?;
                let (m, report) =
                    wf.load_into(FsAdapterClassifier::new(&acfg, device), LoadMode::Strict)?;
                Ok((
                    Network::Adapter(Box::new(m)),
                    format!("FS-Adapter classifier ({report})"),
                ))
            }
            CheckpointKind::Fas => {
                cfg.num_classes = 0;
                cfg.global_pool = true;
                cfg.validate()?;
                let fresh =
                    FasClassifier::new(VisionTransformer::new(&cfg, device), fas_norm, device);
                let (m, report) = wf.load_into(fresh, LoadMode::Strict)?;
                Ok((
                    Network::Fas(Box::new(m)),
                    format!("face anti-spoofing classifier, {fas_norm:?} norm ({report})"),
                ))
            }
            CheckpointKind::Classifier => {
                cfg.num_classes = shapes.get("head.weight").map_or(0, |s| s[0]);
                cfg.global_pool = !shapes.contains_key("norm.weight");
                cfg.validate()?;
                let (m, report) =
                    wf.load_into(VisionTransformer::new(&cfg, device), LoadMode::Strict)?;
                Ok((
                    Network::Vit(Box::new(m)),
                    format!("ViT classifier ({report})"),
                ))
            }
        }
    }

    /// Pooled features `[N, D]` of normalised images `[N, 3, S, S]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Network::Vit(m) => m.forward_features(x),
            Network::Adapter(m) => m.forward_features(x),
            Network::Fas(m) => m.backbone.vit.forward_features(x),
        }
    }

    /// Logits `[N, classes]` (the features of a head-less encoder).
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Network::Vit(m) => m.forward(x),
            Network::Adapter(m) => m.forward(x).logits,
            Network::Fas(m) => m.forward(x),
        }
    }

    /// Output classes (0 without a head).
    pub fn classes(&self) -> usize {
        match self {
            Network::Vit(m) => m.head.as_ref().map_or(0, |h| h.weight.val().dims()[1]),
            Network::Adapter(m) => m.head.weight.val().dims()[1],
            Network::Fas(_) => 2,
        }
    }

    /// Every block's attention probabilities of the encoder, `depth` tensors `[N, heads, T, T]`.
    pub fn attention_probs(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        match self {
            Network::Vit(m) => m.attention_probs(x),
            Network::Adapter(m) => m.attention_probs(x),
            Network::Fas(m) => m.backbone.vit.attention_probs(x),
        }
    }

    /// Last-block class-token attention over the patches, heads averaged, `[N, L]`.
    pub fn attention(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Network::Vit(m) => m.last_attention(x),
            Network::Adapter(m) => m.last_attention(x),
            Network::Fas(m) => m.backbone.vit.last_attention(x),
        }
    }

    /// [`Network::attention`] read back: one `L`-value map per image of `x = [N, 3, S, S]`.
    pub fn attention_maps(&self, x: Tensor<4>) -> Result<Vec<Vec<f32>>> {
        let maps = self.attention(x);
        let l = maps.dims()[1];
        let v = maps
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Invalid(format!("reading attention: {e:?}")))?;
        Ok(v.chunks(l.max(1)).map(<[f32]>::to_vec).collect())
    }
}

/// The encoder architecture a weight file's tensor shapes imply (an official `.pth` carries no
/// config): width from `cls_token`, patch size and channels from `patch_embed.proj.weight`,
/// input side from `pos_embed`'s token count, depth from the block indices, MLP ratio from
/// `fc1`. The head count is no shape: it is the preset's of the same width, depth and patch.
pub fn infer_model(wf: &WeightFile) -> Result<VitConfig> {
    let shapes = wf.shapes();
    let bad = |what: &str| Error::Checkpoint {
        path: wf.path().to_path_buf(),
        reason: format!("cannot tell the architecture from the tensors ({what}): pass --model"),
    };
    let dim = *shapes
        .get("cls_token")
        .and_then(|s| s.last())
        .ok_or_else(|| bad("no cls_token"))?;
    let proj = shapes
        .get("patch_embed.proj.weight")
        .filter(|s| s.len() == 4)
        .ok_or_else(|| bad("no patch_embed.proj.weight [D, C, p, p]"))?;
    let (in_chans, patch) = (proj[1], proj[2]);
    let tokens = shapes
        .get("pos_embed")
        .and_then(|s| s.get(1))
        .ok_or_else(|| bad("no pos_embed [1, 1 + L, D]"))?;
    let grid = ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
    if grid * grid + 1 != *tokens {
        return Err(bad("pos_embed is not 1 + a square number of tokens"));
    }
    let depth = depth_of(shapes).ok_or_else(|| bad("no blocks"))?;
    let hidden = shapes
        .get("blocks.0.mlp.fc1.weight")
        .map(|s| s[0])
        .ok_or_else(|| bad("no blocks.0.mlp.fc1.weight"))?;
    let heads = fsvfm_model::PRESETS
        .iter()
        .filter_map(|p| VitConfig::preset(p))
        .find(|c| c.embed_dim == dim && c.depth == depth && c.patch_size == patch)
        .map(|c| c.num_heads)
        .ok_or(Error::MissingMetadata {
            checkpoint: wf.path().to_path_buf(),
            missing: "the number of attention heads (no preset has this width and depth)",
            legacy: "model.json or state.json",
            flag: "--model PRESET|FILE.json (DetectorOptions::model)",
        })?;
    let mut cfg = VitConfig::new(patch, dim, depth, heads);
    cfg.img_size = grid * patch;
    cfg.in_chans = in_chans;
    cfg.mlp_ratio = hidden as f64 / dim as f64;
    cfg.validate()?;
    Ok(cfg)
}

/// The encoder of any weight file (a pre-training network's, a classifier's backbone) built for
/// `cfg` (validated here) and loaded as the official fine-tuning does (`strict=False`): every
/// encoder weight must be there; a missing `fc_norm` stays the fresh identity one.
pub fn load_encoder(
    wf: &WeightFile,
    cfg: &VitConfig,
    device: &Device,
) -> Result<(VisionTransformer, fsvfm_model::LoadReport)> {
    cfg.validate()?;
    let (m, report) = wf.load_into(VisionTransformer::new(cfg, device), LoadMode::Partial)?;
    let missing: Vec<_> = report
        .missing
        .iter()
        .filter(|k| !k.starts_with("fc_norm."))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Checkpoint {
            path: wf.path().to_path_buf(),
            reason: format!("lacks encoder weights {missing:?}: is the model the right size?"),
        });
    }
    Ok((m, report))
}

/// The number of transformer blocks a weight file's keys name (`blocks.<i>.…`), if any.
pub fn depth_of(shapes: &std::collections::BTreeMap<String, Vec<usize>>) -> Option<usize> {
    shapes
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|d| d + 1)
}

/// Where a [`Described`] checkpoint's metadata came from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataSource {
    /// Its `fsvfm.json`.
    Sidecar(PathBuf),
    /// The previous release's files beside it (`model.json`, `state.json`,
    /// `pretrain_ds_mean_std.txt`, `fas.json`).
    Legacy(Vec<PathBuf>),
    /// Only the caller's options (an official `.pth`).
    Options,
    /// The architecture from the tensor shapes ([`infer_model`]); the rest from the options.
    Shapes,
}

/// What loading a checkpoint needs besides its weights, resolved from the caller's options
/// first, then its sidecar, then the previous release's files.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// The encoder's architecture.
    pub model: VitConfig,
    /// Input normalisation, when known (a detector needs it: [`Described::require_mean_std`]).
    pub mean_std: Option<MeanStd>,
    /// The FAS embedder norm (per sample unless the sidecar says token axis).
    pub fas_norm: FasNorm,
    /// The sidecar, when there is one (kind, class order, calibration: see the methods).
    pub sidecar: Option<Sidecar>,
    /// Where the metadata came from.
    pub source: MetadataSource,
}

/// Refuses paths that are not model files: a folder, or a file inside a transfer run's resume
/// folder `checkpoint-last/` (its weights are split and its head may be stale), naming the file
/// to use instead.
pub fn check_model_path(path: &Path) -> Result<()> {
    let best_in = |dir: &Path| {
        [
            fsvfm_train::transfer::BEST,
            "checkpoint-best_hter.safetensors",
        ]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    };
    let resume_dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    if let Some(dir) = resume_dir.filter(|d| d.file_name().is_some_and(|n| n == "checkpoint-last"))
        && let Some(best) = dir.parent().and_then(best_in)
    {
        return Err(Error::NotAModel {
            path: path.to_path_buf(),
            what: "in the resume folder of a training run (checkpoint-last/, for --resume)",
            use_instead: best,
        });
    }
    if path.is_dir() {
        let inside = ["online.safetensors", fsvfm_train::transfer::BEST]
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.is_file())
            .or_else(|| best_in(path));
        return match inside {
            Some(f) => Err(Error::NotAModel {
                path: path.to_path_buf(),
                what: "a folder",
                use_instead: f,
            }),
            None => Err(Error::Invalid(format!(
                "{} is a folder, not a weight file (.safetensors or .pth)",
                path.display()
            ))),
        };
    }
    Ok(())
}

/// Resolves what loading the weight file `wf` (opened by [`open_model`]) needs: `model` and `mean_std` when given, else its
/// `fsvfm.json`, else the previous release's files beside it, else (the architecture) the
/// tensor shapes ([`infer_model`]). What cannot be known is an [`Error::MissingMetadata`]
/// naming the flag that supplies it (an unknown mean/std only where it is needed:
/// [`Described::require_mean_std`]).
pub fn describe(
    wf: &WeightFile,
    model: Option<&VitConfig>,
    mean_std: Option<MeanStd>,
) -> Result<Described> {
    let checkpoint = wf.path();
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    let sidecar = Sidecar::read_in(dir)?;
    let legacy = match &sidecar {
        Some(_) => Legacy::default(),
        None => Legacy::read(dir)?,
    };
    let source = match (&sidecar, legacy.files.is_empty()) {
        (Some(_), _) => MetadataSource::Sidecar(dir.join(SIDECAR_FILE)),
        (None, false) => MetadataSource::Legacy(legacy.files.clone()),
        (None, true) => MetadataSource::Options,
    };
    let known = model
        .cloned()
        .or_else(|| sidecar.as_ref().map(|s| s.model.clone()))
        .or(legacy.model);
    let (model, source) = match known {
        Some(m) => (m, source),
        None => (infer_model(wf)?, MetadataSource::Shapes),
    };
    let mean_std = mean_std
        .or(sidecar.as_ref().map(|s| s.mean_std))
        .or(legacy.mean_std);
    let fas_norm = sidecar
        .as_ref()
        .and_then(|s| s.fas_norm)
        .or(legacy.fas_norm)
        .unwrap_or(FasNorm::PerSample);
    Ok(Described {
        model,
        mean_std,
        fas_norm,
        sidecar,
        source,
    })
}

/// Opens a model file: [`check_model_path`] first (a folder or a resume folder gets the error
/// naming the file to use), then the weight file's header.
pub fn open_model(path: &Path) -> Result<WeightFile> {
    check_model_path(path)?;
    Ok(WeightFile::open(path)?)
}

/// Calibration of a file without a sidecar: none.
static UNCALIBRATED: Calibration = Calibration {
    threshold: None,
    temperature: None,
    suspect_threshold: None,
    operating_point: None,
};

impl Described {
    /// The kind the sidecar states (`None` for files without a sidecar).
    pub fn kind(&self) -> Option<ModelKind> {
        self.sidecar.as_ref().map(|s| s.kind)
    }

    /// The fake class index the sidecar states.
    pub fn fake_index(&self) -> Option<usize> {
        self.sidecar.as_ref().and_then(|s| s.fake_index)
    }

    /// Threshold and temperature (empty until calibrated, and for files without a sidecar).
    pub fn calibration(&self) -> &Calibration {
        self.sidecar
            .as_ref()
            .map_or(&UNCALIBRATED, |s| &s.calibration)
    }

    /// The normalisation, or an [`Error::MissingMetadata`] naming the flag that supplies it.
    pub fn require_mean_std(&self, checkpoint: &Path) -> Result<MeanStd> {
        self.mean_std.ok_or(Error::MissingMetadata {
            checkpoint: checkpoint.to_path_buf(),
            missing: "the normalisation (mean/std)",
            legacy: "pretrain_ds_mean_std.txt",
            flag: "--mean-std FILE|vggface2 (DetectorOptions::mean_std)",
        })
    }

    /// Where the metadata came from, for a log line.
    pub fn source_text(&self) -> String {
        match &self.source {
            MetadataSource::Sidecar(p) => p.display().to_string(),
            MetadataSource::Legacy(files) => format!(
                "the previous release's {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            MetadataSource::Options => "the options given".into(),
            MetadataSource::Shapes => {
                "the tensor shapes (architecture; heads of the matching preset)".into()
            }
        }
    }
}

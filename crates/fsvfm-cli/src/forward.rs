//! `fsvfm forward`, `fsvfm convert`, `fsvfm inspect`: run and port checkpoints.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};
use fsvfm_data::npy;
use fsvfm_model::{
    AdapterConfig, CheckpointKind, FsAdapterClassifier, LoadMode, VisionTransformer, VitConfig,
    WeightFile,
};

/// What `forward` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Pooled features `[N, D]` (mean-pool + `fc_norm`, or cls + `norm`).
    Features,
    /// Head outputs `[N, num_classes]`, in the checkpoint's class order.
    Logits,
}

/// Arguments of `fsvfm forward`.
#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Weight file: official `.pth` (pre-training, fine-tuned or FS-Adapter) or safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture: a preset (`vit_small_patch16`, ...) or a JSON file with timm-named fields.
    #[arg(long)]
    pub model: String,
    /// Input batch, float32 `[N, C, H, W]`, already normalised.
    #[arg(long)]
    pub input: PathBuf,
    /// Output `.npy` (float32 `[N, D]` or `[N, C]`).
    #[arg(long)]
    pub output: PathBuf,
    /// Features or logits.
    #[arg(long, value_enum, default_value_t = What::Features)]
    pub what: What,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

/// Arguments of `fsvfm convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Official `.pth` checkpoint (the `model` entry is converted; optimizer and args are dropped),
    /// or a `.safetensors` (ours, e.g. `checkpoint-N/online.safetensors`) to turn into a `.pth`.
    pub input: PathBuf,
    /// Output `.safetensors`, or `.pth` (`{'model': state_dict}`, what the official code loads).
    pub output: PathBuf,
}

/// Arguments of `fsvfm inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Weight file (`.pth` or `.safetensors`).
    pub checkpoint: PathBuf,
    /// Print every tensor with its shape.
    #[arg(long)]
    pub tensors: bool,
}

/// A preset name or a JSON config path.
pub fn resolve_config(model: &str) -> Result<VitConfig> {
    if let Some(cfg) = VitConfig::preset(model) {
        return Ok(cfg);
    }
    let path = PathBuf::from(model);
    ensure!(
        path.exists(),
        "unknown model '{model}': use a preset ({}) or a JSON config file",
        fsvfm_model::PRESETS.join(", ")
    );
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: VitConfig = serde_json::from_str(&text)
        .with_context(|| format!("parsing model config {}", path.display()))?;
    Ok(cfg)
}

/// The model a weight file holds, built for `cfg` and loaded.
pub(crate) enum Loaded {
    Vit(Box<VisionTransformer>),
    Adapter(Box<FsAdapterClassifier>),
    Fas(Box<fsvfm_model::FasClassifier>),
}

impl Loaded {
    /// Pooled features `[N, D]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Loaded::Vit(m) => m.forward_features(x),
            Loaded::Adapter(m) => m.forward_features(x),
            Loaded::Fas(m) => m.backbone.vit.forward_features(x),
        }
    }

    /// Logits `[N, classes]` (the features of a head-less encoder).
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Loaded::Vit(m) => m.forward(x),
            Loaded::Adapter(m) => m.forward(x).logits,
            Loaded::Fas(m) => m.forward(x),
        }
    }

    /// Output classes (0 without a head).
    pub fn classes(&self) -> usize {
        match self {
            Loaded::Vit(m) => m.head.as_ref().map_or(0, |h| h.weight.val().dims()[1]),
            Loaded::Adapter(m) => m.head.weight.val().dims()[1],
            Loaded::Fas(_) => 2,
        }
    }

    /// Last-block class-token attention `[N, L]`.
    pub fn attention(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Loaded::Vit(m) => m.last_attention(x),
            Loaded::Adapter(m) => m.last_attention(x),
            Loaded::Fas(m) => m.backbone.vit.last_attention(x),
        }
    }
}

/// Adapts `cfg`'s readout to what the file holds (class count from `head.weight`, mean-pool vs cls
/// from `fc_norm` vs `norm`), builds the matching model, and loads it: strictly for classifiers
/// and adapters; for pre-training checkpoints only the encoder, as the official fine-tuning does
/// (`strict=False`, fresh identity `fc_norm`).
pub(crate) fn load(wf: &WeightFile, mut cfg: VitConfig) -> Result<(Loaded, String)> {
    cfg.drop_path_rate = 0.0;
    let shapes = wf.shapes();
    let device = crate::runtime::device();
    match wf.kind() {
        CheckpointKind::Pretrain | CheckpointKind::Target => {
            cfg.global_pool = true;
            cfg.num_classes = 0;
            cfg.validate()?;
            let (m, report) =
                wf.load_into(VisionTransformer::new(&cfg, &device), LoadMode::Partial)?;
            let unexpected_missing: Vec<_> = report
                .missing
                .iter()
                .filter(|k| !k.starts_with("fc_norm."))
                .collect();
            ensure!(
                unexpected_missing.is_empty(),
                "{} is a pre-training checkpoint but lacks encoder weights {:?}: is --model the right size?",
                wf.path().display(),
                unexpected_missing
            );
            Ok((
                Loaded::Vit(Box::new(m)),
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
                wf.load_into(FsAdapterClassifier::new(&acfg, &device), LoadMode::Strict)?;
            Ok((
                Loaded::Adapter(Box::new(m)),
                format!("FS-Adapter classifier ({report})"),
            ))
        }
        CheckpointKind::Fas => {
            cfg.num_classes = 0;
            cfg.global_pool = true;
            cfg.validate()?;
            // The embedder norm is a training choice, not a weight: `fsvfm fas` writes it beside
            // the checkpoint.
            let norm = match wf.path().parent().map(|d| d.join("fas.json")) {
                Some(p) if p.is_file() => {
                    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p)?)?;
                    serde_json::from_value(v["norm"].clone())
                        .with_context(|| format!("reading {}", p.display()))?
                }
                _ => fsvfm_model::FasNorm::PerSample,
            };
            let vit = VisionTransformer::new(&cfg, &device);
            let fresh = fsvfm_model::FasClassifier::new(vit, norm, &device);
            let (m, report) = wf.load_into(fresh, LoadMode::Strict)?;
            Ok((
                Loaded::Fas(Box::new(m)),
                format!("face anti-spoofing classifier, {norm:?} norm ({report})"),
            ))
        }
        CheckpointKind::Classifier => {
            cfg.num_classes = shapes.get("head.weight").map_or(0, |s| s[0]);
            cfg.global_pool = !shapes.contains_key("norm.weight");
            cfg.validate()?;
            let (m, report) =
                wf.load_into(VisionTransformer::new(&cfg, &device), LoadMode::Strict)?;
            Ok((
                Loaded::Vit(Box::new(m)),
                format!("ViT classifier ({report})"),
            ))
        }
    }
}

/// `fsvfm forward`.
pub fn forward(a: ForwardArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    let cfg = resolve_config(&a.model)?;
    let input = npy::read_f32(&a.input)?;
    let want = [cfg.in_chans, cfg.img_size, cfg.img_size];
    ensure!(
        input.shape.len() == 4 && input.shape[1..] == want,
        "{} has shape {:?}, but {} expects [N, {}, {}, {}] (normalised float32 images)",
        a.input.display(),
        input.shape,
        a.model,
        want[0],
        want[1],
        want[2]
    );
    ensure!(
        input.data.iter().all(|v| v.is_finite()),
        "{} contains NaN or infinite values",
        a.input.display()
    );
    let wf = WeightFile::open(&a.checkpoint)?;
    let (model, what_loaded) = load(&wf, cfg)?;
    eprintln!("loaded {}: {what_loaded}", a.checkpoint.display());
    if let What::Logits = a.what {
        ensure!(
            model.classes() > 0,
            "{} has no classifier head (a pre-training checkpoint?): use --what features",
            a.checkpoint.display()
        );
    }
    let device = crate::runtime::device();
    let n = input.shape[0];
    let per = want.iter().product::<usize>();
    let mut out: Vec<f32> = Vec::new();
    let mut width = 0;
    for start in (0..n).step_by(a.batch_size) {
        let b = a.batch_size.min(n - start);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                input.data[start * per..(start + b) * per].to_vec(),
                [b, want[0], want[1], want[2]],
            ),
            &device,
        );
        let y = match a.what {
            What::Features => model.features(x),
            What::Logits => model.logits(x),
        };
        width = y.dims()[1];
        out.extend(
            y.into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading output: {e:?}"))?,
        );
    }
    npy::write_f32(&a.output, &[n, width], &out)?;
    eprintln!("wrote {} [{n}, {width}]", a.output.display());
    Ok(())
}

/// `fsvfm convert`.
pub fn convert(a: ConvertArgs) -> Result<()> {
    let ext = |p: &std::path::Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
    };
    let n = match (ext(&a.input).as_deref(), ext(&a.output).as_deref()) {
        (Some("safetensors"), Some("pth")) => {
            fsvfm_model::pth_writer::convert_safetensors_to_pth(&a.input, &a.output)?
        }
        (_, Some("safetensors")) => {
            fsvfm_model::checkpoint::convert_pth_to_safetensors(&a.input, &a.output)?
        }
        _ => bail!(
            "convert goes .pth → .safetensors or .safetensors → .pth (by extension), got {} → {}",
            a.input.display(),
            a.output.display()
        ),
    };
    println!(
        "wrote {} ({n} tensors, names and layouts unchanged)",
        a.output.display()
    );
    Ok(())
}

/// `fsvfm inspect`.
pub fn inspect(a: InspectArgs) -> Result<()> {
    let wf = WeightFile::open(&a.checkpoint)?;
    let shapes = wf.shapes();
    let params: usize = shapes.values().map(|s| s.iter().product::<usize>()).sum();
    let dim = shapes.get("cls_token").and_then(|s| s.last().copied());
    let depth = shapes
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|d| d + 1);
    let preset = fsvfm_model::PRESETS.iter().find(|p| {
        let c = VitConfig::preset(p).expect("preset");
        Some(c.embed_dim) == dim && Some(c.depth) == depth
    });
    let info = serde_json::json!({
        "path": a.checkpoint.display().to_string(),
        "format": format!("{:?}", wf.format()).to_lowercase(),
        "kind": format!("{:?}", wf.kind()).to_lowercase(),
        "tensors": shapes.len(),
        "parameters": params,
        "embed_dim": dim,
        "depth": depth,
        "preset": preset,
        "num_classes": shapes.get("head.weight").map(|s| s[0]),
    });
    println!("{}", serde_json::to_string_pretty(&info)?);
    if a.tensors {
        for (k, s) in shapes {
            println!("{k}\t{s:?}");
        }
    }
    Ok(())
}

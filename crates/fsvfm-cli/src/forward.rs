//! `fsvfm forward`, `fsvfm convert`, `fsvfm inspect`: run and port checkpoints.

use std::path::PathBuf;

use anyhow::{Result, bail, ensure};
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};
use fsvfm_data::npy;
use fsvfm_model::{VitConfig, WeightFile};

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
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 8)]
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

/// `fsvfm forward`.
pub fn forward(a: ForwardArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    let cfg = fsvfm::model_config(&a.model)?;
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
    // The FAS embedder norm is a training choice, not a weight: the sidecar says it.
    let wf = fsvfm::checkpoint::open_model(&a.checkpoint)?;
    let fas_norm = fsvfm::describe(&wf, Some(&cfg), None)?.fas_norm;
    let device = crate::runtime::device();
    let (model, what_loaded) = fsvfm::Network::load(&wf, cfg, fas_norm, &device)?;
    eprintln!("loaded {}: {what_loaded}", a.checkpoint.display());
    if let What::Logits = a.what {
        ensure!(
            model.classes() > 0,
            "{} has no classifier head (a pre-training checkpoint?): use --what features",
            a.checkpoint.display()
        );
    }
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
    // Finite inputs can still overflow (3e38 squared in a LayerNorm): no NaN file is written.
    let bad = out.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        let largest = input.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        anyhow::bail!(
            "{bad} of {} outputs are NaN or infinite, nothing written: {} holds values up to {largest:e} \
             in magnitude (normalised images lie within about ±5), or {} holds weights that overflow",
            out.len(),
            a.input.display(),
            a.checkpoint.display()
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
    let depth = fsvfm::checkpoint::depth_of(shapes);
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

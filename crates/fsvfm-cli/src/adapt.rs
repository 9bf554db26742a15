//! `fsvfm adapt` (FS-Adapter training on a frozen pre-trained backbone, cached features) and
//! `fsvfm finetune` (full fine-tuning with layer-wise lr decay).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::Args;
use fsvfm_model::{AdapterConfig, FsAdapterClassifier, LoadMode, WeightFile};
use fsvfm_train::adapt::{AdaptOptions, adapt};

use crate::eval::{mean_std_near, vit_config_near};

/// Arguments of `fsvfm adapt`.
#[derive(Args, Debug)]
pub struct AdaptArgs {
    /// Backbone: a pre-training checkpoint (ours, e.g. `run/checkpoint-29/online.safetensors`, or an
    /// official `checkpoint-*.pth`); its encoder is loaded and frozen.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture (preset or JSON); default: the `state.json` next to our checkpoints, else ViT-B/16.
    #[arg(long)]
    pub model: Option<String>,
    /// Training images: ImageFolder (real*/, fake*/), JSONL manifest or DeepfakeBench JSON.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images (same formats); default: hold out `--val-fraction` of the training set.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Held-out fraction when no `--val` is given.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Output folder: checkpoint-min_val_loss.safetensors, model.json, pretrain_ds_mean_std.txt, log.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Epochs (paper recipes: 50–60).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Batch size (paper: 128–512 per GPU).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Base learning rate, `lr = blr · batch / 256` (paper DfD: 1e-3 ViT-S, 5e-3 ViT-B, 1e-2 ViT-L).
    #[arg(long, default_value_t = 5e-3)]
    pub blr: f64,
    /// Warmup epochs.
    #[arg(long, default_value_t = 5.0)]
    pub warmup_epochs: f64,
    /// Weight of the Real-Anchor Contrastive loss (paper: 0.01–0.1).
    #[arg(long, default_value_t = 0.01)]
    pub w_cl: f64,
    /// AdamW weight decay (0 in the DfD/DiFF recipes).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Normalisation (`vggface2` or a file); default: the pre-training run's.
    #[arg(long)]
    pub mean_std: Option<String>,
    /// DeepfakeBench split for `--data` (the validation file uses `val`).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Folder that DeepfakeBench frame paths are relative to.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Seed of the validation split and batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `fsvfm adapt`.
pub fn adapt_cmd(a: AdaptArgs) -> Result<()> {
    ensure!(
        a.epochs > 0 && a.batch_size > 0,
        "--epochs and --batch-size must be positive"
    );
    ensure!(
        (0.0..1.0).contains(&a.val_fraction),
        "--val-fraction must be in [0, 1)"
    );
    let mut vit = vit_config_near(&a.checkpoint, a.model.as_deref())?;
    vit.num_classes = 2;
    vit.global_pool = true;
    vit.drop_path_rate = 0.0;
    let cfg = AdapterConfig::new(vit.clone());
    cfg.validate()?;
    let device = crate::runtime::device();
    let wf = WeightFile::open(&a.checkpoint)?;
    let (model, report) =
        wf.load_into(FsAdapterClassifier::new(&cfg, &device), LoadMode::Partial)?;
    let encoder_missing: Vec<_> = report
        .missing
        .iter()
        .filter(|k| {
            !["fc_norm.", "adapter.", "projector.", "head."]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    ensure!(
        encoder_missing.is_empty(),
        "{} lacks encoder weights {encoder_missing:?}: is --model the right size?",
        a.checkpoint.display()
    );
    let (mean_std, src) = mean_std_near(&a.checkpoint, a.mean_std.as_deref())?;
    let read = |p: &PathBuf, split: &str| {
        fsvfm_data::read_eval_set(p, split, a.root.as_deref()).map_err(anyhow::Error::msg)
    };
    let (train, mut skipped) = read(&a.data, &a.split)?;
    let val = match &a.val {
        Some(v) => {
            let (s, k) = read(v, "val")?;
            skipped.extend(k);
            s
        }
        None => Vec::new(),
    };
    eprintln!(
        "backbone from {} ({report}); normalisation: {src}; {} training images{}",
        a.checkpoint.display(),
        train.len(),
        if val.is_empty() {
            format!(", {:.0} % held out for validation", a.val_fraction * 100.0)
        } else {
            format!(", {} validation images", val.len())
        }
    );
    let opts = AdaptOptions {
        train,
        val,
        val_fraction: a.val_fraction,
        output: a.output.clone(),
        img_size: vit.img_size,
        mean_std,
        epochs: a.epochs,
        batch_size: a.batch_size,
        blr: a.blr,
        warmup_epochs: a.warmup_epochs,
        w_cl: a.w_cl,
        weight_decay: a.weight_decay,
        seed: a.seed,
        device,
    };
    let summary = adapt(model, &opts, |e| {
        eprintln!(
            "epoch {:>3}: train {:.4} (ce {:.4} rac {:.4}) | val ce {:.4} acc {:.3} | {:.2}s",
            e.epoch, e.train.total, e.train.ce, e.train.rac, e.val_loss, e.val_acc, e.seconds
        )
    })?;
    std::fs::write(
        a.output.join("model.json"),
        serde_json::to_string_pretty(&vit)?,
    )
    .with_context(|| format!("writing {}", a.output.join("model.json").display()))?;
    for (p, why) in &summary.skipped {
        eprintln!("left out {}: {why}", p.display());
    }
    for k in &skipped {
        eprintln!("left out {}: {}", k.path, k.reason);
    }
    println!(
        "trainable parameters: {} (adapter + projector + head); features: {:.1}s once, training: {:.1}s for {} epochs\nbest: {}",
        summary.trainable,
        summary.feature_seconds,
        summary.train_seconds,
        summary.epochs.len(),
        summary.best.display()
    );
    Ok(())
}

/// Arguments of `fsvfm finetune`.
#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Encoder: a pre-training checkpoint (ours or an official `checkpoint-*.pth`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture (preset or JSON); default: the `state.json` next to our checkpoints, else ViT-B/16.
    #[arg(long)]
    pub model: Option<String>,
    /// Training images: ImageFolder (real*/, fake*/), JSONL manifest or DeepfakeBench JSON.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images; default: hold out `--val-fraction` of the training set.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Held-out fraction when no `--val` is given.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Output folder: checkpoint-min_val_loss.safetensors, model.json, pretrain_ds_mean_std.txt, log.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    /// Epochs (paper DfD: 10).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Batch size (paper: 32 per GPU × 2).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Base learning rate, `lr = blr · batch / 256` (paper DfD ViT-B: 2e-4).
    #[arg(long, default_value_t = 2e-4)]
    pub blr: f64,
    /// Layer-wise lr decay (paper DfD ViT-B: 0.6).
    #[arg(long, default_value_t = 0.65)]
    pub layer_decay: f64,
    /// Weight decay (paper DfD: 0.03–0.05).
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    /// Stochastic depth, rising linearly over the blocks.
    #[arg(long, default_value_t = 0.1)]
    pub drop_path: f64,
    /// Warmup epochs.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Normalisation (`vggface2` or a file); default: the pre-training run's.
    #[arg(long)]
    pub mean_std: Option<String>,
    /// Seed of the validation split, batch order and drop path.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `fsvfm finetune`.
pub fn finetune_cmd(a: FinetuneArgs) -> Result<()> {
    use fsvfm_model::VisionTransformer;
    use fsvfm_train::finetune::{FinetuneOptions, finetune};
    ensure!(
        a.epochs > 0 && a.batch_size > 0,
        "--epochs and --batch-size must be positive"
    );
    let mut vit = vit_config_near(&a.checkpoint, a.model.as_deref())?;
    vit.num_classes = 2;
    vit.global_pool = true;
    vit.drop_path_rate = a.drop_path;
    vit.validate()?;
    let device = crate::runtime::device();
    // The new fc_norm and head are drawn from the seeded device generator.
    device.seed(a.seed);
    let wf = WeightFile::open(&a.checkpoint)?;
    let (model, report) = wf.load_into(VisionTransformer::new(&vit, &device), LoadMode::Partial)?;
    let encoder_missing: Vec<_> = report
        .missing
        .iter()
        .filter(|k| !k.starts_with("fc_norm.") && !k.starts_with("head."))
        .collect();
    ensure!(
        encoder_missing.is_empty(),
        "{} lacks encoder weights {encoder_missing:?}: is --model the right size?",
        a.checkpoint.display()
    );
    let (mean_std, src) = mean_std_near(&a.checkpoint, a.mean_std.as_deref())?;
    let read = |p: &PathBuf, split: &str| {
        fsvfm_data::read_eval_set(p, split, None).map_err(anyhow::Error::msg)
    };
    let (train, _) = read(&a.data, "train")?;
    let (train, val) = match &a.val {
        Some(v) => (train, read(v, "val")?.0),
        None => fsvfm_train::adapt::split_validation(train, a.val_fraction, a.seed),
    };
    eprintln!(
        "encoder from {} ({report}); normalisation: {src}; {} training / {} validation images",
        a.checkpoint.display(),
        train.len(),
        val.len()
    );
    let opts = FinetuneOptions {
        train,
        val,
        output: a.output.clone(),
        img_size: vit.img_size,
        mean_std,
        epochs: a.epochs,
        batch_size: a.batch_size,
        blr: a.blr,
        layer_decay: a.layer_decay,
        weight_decay: a.weight_decay,
        warmup_epochs: a.warmup_epochs,
        seed: a.seed,
        device,
    };
    let settings = fsvfm_train::AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: a.weight_decay,
    };
    let (epochs, best) = finetune(model, fsvfm_train::AdamW::new(settings), &opts, |e| {
        eprintln!(
            "epoch {:>3}: train {:.4} | val ce {:.4} acc {:.3} | {:.1} img/s",
            e.epoch, e.train_loss, e.val_loss, e.val_acc, e.images_per_s
        )
    })?;
    let mut saved = vit.clone();
    saved.drop_path_rate = 0.0;
    std::fs::write(
        a.output.join("model.json"),
        serde_json::to_string_pretty(&saved)?,
    )
    .with_context(|| format!("writing {}", a.output.join("model.json").display()))?;
    println!(
        "fine-tuned {} epochs; best: {}",
        epochs.len(),
        best.display()
    );
    Ok(())
}

//! `fsvfm adapt` (FS-Adapter training on a frozen pre-trained backbone, cached features) and
//! `fsvfm finetune` (full fine-tuning with layer-wise lr decay).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::store::ModuleSnapshot;
use clap::Args;
use fsvfm_model::{
    AdapterConfig, FsAdapterClassifier, LoadMode, VisionTransformer, VitConfig, WeightFile,
};
use fsvfm_train::batches::Augmentation;
use fsvfm_train::transfer::{TransferOptions, split_validation};
use fsvfm_train::transfer_recipe::{Method, TransferRecipe};

use crate::eval::encoder_of;

/// What `adapt` and `finetune` share. Unset numbers take the recipe's value.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// Recipe: `dfd` (cross-dataset deepfake detection), `diff` (diffusion faces) — the paper's
    /// settings for the encoder's size (S/B/L) — `tiny` (the CPU demo), or a TOML file
    /// (`base = "dfd"` plus overrides). The resolved recipe is written to `recipe.toml`.
    #[arg(long, default_value = "dfd")]
    pub recipe: String,
    /// Encoder: a pre-training checkpoint (ours, e.g. `run/checkpoint-29/online.safetensors`, or an
    /// official `checkpoint-*.pth`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture (preset or JSON); default: the checkpoint's `fsvfm.json`, else (official `.pth`) its
    /// tensor shapes with the heads of the matching preset.
    #[arg(long)]
    pub model: Option<String>,
    /// Training images: ImageFolder (real*/, fake*/), JSONL manifest or DeepfakeBench JSON (`train` split).
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images (same formats; `val` split); default: hold out `--val-fraction` of the data.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Held-out fraction when no `--val` is given.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Folder that DeepfakeBench frame paths are relative to.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Output folder: checkpoint-min_val_loss.safetensors, fsvfm.json (the sidecar), log.jsonl, checkpoint-last/.
    #[arg(long)]
    pub output: PathBuf,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (the recipes use the official effective batch, per-GPU × 2).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate, `lr = blr · batch / 256`.
    #[arg(long)]
    pub blr: Option<f64>,
    /// Warmup epochs (then cosine to 1e-6).
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Layer-wise lr decay (`finetune`; recipes: 0.6–0.95 by task and size).
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// Stochastic depth, rising linearly over the blocks (`finetune`; recipes: 0.1).
    #[arg(long)]
    pub drop_path: Option<f64>,
    /// Weight of the Real-Anchor Contrastive loss (`adapt`; recipes: 0.01–0.1).
    #[arg(long)]
    pub w_cl: Option<f64>,
    /// Normalisation (`vggface2` or a file); default: the pre-training run's.
    #[arg(long)]
    pub mean_std: Option<String>,
    /// Seed of the new layers, the validation split, the batch order, the augmentation draws and
    /// drop path.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Training augmentation instead of the recipe's: `official` (the DfD/DiFF one:
    /// RandomResizedCrop, flip, RandAugment, random erasing, Mixup/CutMix, smoothing 0.1), `fas`
    /// (the anti-spoofing one: saturation jitter, flip, resize) or `none` (resize only; `adapt`
    /// then caches the backbone's features once, orders of magnitude faster).
    #[arg(long, value_enum)]
    pub augment: Option<AugmentPreset>,
    /// RandAugment config in timm syntax (`rand-m9-mstd0.5-inc1`), or `none`; overrides the preset.
    #[arg(long)]
    pub aa: Option<String>,
    /// Random-erasing probability; overrides the preset.
    #[arg(long)]
    pub reprob: Option<f64>,
    /// Mixup α (0 = off); overrides the preset.
    #[arg(long)]
    pub mixup: Option<f64>,
    /// CutMix α (0 = off); overrides the preset.
    #[arg(long)]
    pub cutmix: Option<f64>,
    /// Label smoothing; overrides the preset.
    #[arg(long)]
    pub smoothing: Option<f64>,
    /// Also write `augment_batch.png`: the first training batch as the model sees it.
    #[arg(long)]
    pub augment_picture: bool,
    /// Continue the run in `--output` from its `checkpoint-last/` (same command and settings;
    /// the result equals an uninterrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Repeat the smaller class every epoch until real and fake are equally frequent (FSFM
    /// balances by extracting 4× more frames per real video; this does it at training time).
    #[arg(long)]
    pub balance: bool,
    /// No progress bar (the per-epoch lines stay).
    #[arg(long)]
    pub quiet: bool,
}

/// Named training augmentations (`--augment`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AugmentPreset {
    /// The official DfD/DiFF recipe.
    Official,
    /// The official FAS recipe.
    Fas,
    /// Resize only.
    None,
}

impl TransferArgs {
    /// The recipe of `--recipe` for `method` and an encoder of width `embed_dim`, with every
    /// command-line override applied.
    pub fn recipe(&self, method: Method, embed_dim: usize) -> Result<TransferRecipe> {
        let mut r = TransferRecipe::load(&self.recipe, method, embed_dim)?;
        r.augment = self.augmentation(r.augment.clone())?;
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = self.$field { r.$field = v; })*};
        }
        set!(
            epochs,
            batch_size,
            blr,
            warmup_epochs,
            weight_decay,
            layer_decay,
            drop_path,
            w_cl
        );
        r.validate().map_err(anyhow::Error::msg)?;
        Ok(r)
    }

    /// `base` (the recipe's augmentation) after `--augment` and the individual overrides.
    fn augmentation(&self, base: Augmentation) -> Result<Augmentation> {
        let mut aug = match self.augment {
            None => base,
            Some(AugmentPreset::Official) => Augmentation::default(),
            Some(AugmentPreset::Fas) => Augmentation::fas(),
            Some(AugmentPreset::None) => Augmentation::none(0.1),
        };
        if let Some(aa) = &self.aa {
            aug.image.rand_augment = match aa.as_str() {
                "none" | "" => None,
                s => Some(s.parse().map_err(anyhow::Error::msg)?),
            };
        }
        let unit = |name: &str, v: f64| {
            ensure!(
                (0.0..=1.0).contains(&v),
                "{name} must be in [0, 1], got {v}"
            );
            Ok(v)
        };
        if let Some(p) = self.reprob {
            aug.image.re_prob = unit("--reprob", p)?;
        }
        if let Some(s) = self.smoothing {
            aug.mixup.label_smoothing = unit("--smoothing", s)?;
        }
        for (name, v, slot) in [
            ("--mixup", self.mixup, &mut aug.mixup.mixup_alpha),
            ("--cutmix", self.cutmix, &mut aug.mixup.cutmix_alpha),
        ] {
            if let Some(v) = v {
                ensure!(v >= 0.0 && v.is_finite(), "{name} must be ≥ 0, got {v}");
                *slot = v;
            }
        }
        // Asking for a mix turns mixing on under the presets that have none.
        if self.mixup.is_some_and(|v| v > 0.0) || self.cutmix.is_some_and(|v| v > 0.0) {
            aug.mixup.prob = 1.0;
        }
        Ok(aug)
    }
}

/// Resolves the recipe, loads the encoder into `model` (strict except for the fresh layers
/// `new_prefixes`), reads the data and builds the options; writes `recipe.toml`.
fn prepare<M: Module + ModuleSnapshot>(
    a: &TransferArgs,
    method: Method,
    model: impl FnOnce(&VitConfig, &TransferRecipe) -> Result<M>,
    new_prefixes: &[&str],
) -> Result<(M, TransferOptions, TransferRecipe)> {
    let (mut vit, mean_std, src) =
        encoder_of(&a.checkpoint, a.model.as_deref(), a.mean_std.as_deref())?;
    vit.num_classes = 2;
    vit.global_pool = true;
    let recipe = a.recipe(method, vit.embed_dim)?;
    let device = crate::runtime::device();
    // The new layers are drawn from the seeded device generator.
    device.seed(a.seed);
    let wf = WeightFile::open(&a.checkpoint)?;
    let (model, report) = wf.load_into(model(&vit, &recipe)?, LoadMode::Partial)?;
    let missing: Vec<_> = report
        .missing
        .iter()
        .filter(|k| !new_prefixes.iter().any(|p| k.starts_with(p)))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} lacks encoder weights {missing:?}: is --model the right size?",
        a.checkpoint.display()
    );
    let read = |p: &PathBuf, split: &str| {
        fsvfm_data::read_eval_set(p, split, a.root.as_deref()).map_err(anyhow::Error::msg)
    };
    let (train, mut skipped) = read(&a.data, "train")?;
    let (train, val) = match &a.val {
        Some(v) => {
            let (val, k) = read(v, "val")?;
            skipped.extend(k);
            (train, val)
        }
        None => {
            ensure!(
                (0.0..1.0).contains(&a.val_fraction),
                "--val-fraction must be in [0, 1)"
            );
            split_validation(train, a.val_fraction, a.seed)
        }
    };
    for k in &skipped {
        eprintln!("left out {}: {}", k.path, k.reason);
    }
    eprintln!(
        "encoder from {} ({report}); normalisation: {src}; {} training / {} validation images; recipe {}: {} epochs, batch {}, blr {}",
        a.checkpoint.display(),
        train.len(),
        val.len(),
        recipe.name,
        recipe.epochs,
        recipe.batch_size,
        recipe.blr
    );
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let recipe_path = a.output.join("recipe.toml");
    fsvfm_data::write_atomic(&recipe_path, recipe.to_toml().as_bytes(), false)
        .map_err(anyhow::Error::msg)?;
    let opts = TransferOptions {
        train,
        val,
        output: a.output.clone(),
        img_size: vit.img_size,
        model: vit.clone(),
        mean_std,
        epochs: recipe.epochs,
        batch_size: recipe.batch_size,
        blr: recipe.blr,
        warmup_epochs: recipe.warmup_epochs,
        weight_decay: recipe.weight_decay,
        seed: a.seed,
        augment: recipe.augment.clone(),
        augment_picture: a.augment_picture,
        resume: a.resume,
        balance: a.balance,
        on_step: (!a.quiet).then(step_bar),
        device,
    };
    Ok((model, opts, recipe))
}

/// A progress bar over each epoch's steps (restarted at step 1, cleared at the last step so the
/// epoch's summary line follows).
fn step_bar() -> fsvfm_train::transfer::StepHook {
    let bar = std::sync::Mutex::new(None::<indicatif::ProgressBar>);
    fsvfm_train::transfer::StepHook(std::sync::Arc::new(move |done, steps| {
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        let b = bar.get_or_insert_with(|| crate::pretrain::progress_bar(steps as u64));
        b.set_position(done as u64);
        if done == steps {
            b.finish_and_clear();
            *bar = None;
        }
    }))
}

/// Arguments of `fsvfm adapt`.
#[derive(Args, Debug)]
pub struct AdaptArgs {
    #[command(flatten)]
    pub common: TransferArgs,
}

/// Runs `fsvfm adapt`.
pub fn adapt_cmd(a: AdaptArgs) -> Result<()> {
    use fsvfm_train::adapt::{AdaptOptions, adapt};
    let (model, common, recipe) = prepare(
        &a.common,
        Method::Adapter,
        |vit, _| {
            let cfg = AdapterConfig::new(vit.clone());
            cfg.validate()?;
            Ok(FsAdapterClassifier::new(&cfg, &crate::runtime::device()))
        },
        &["fc_norm.", "adapter.", "projector.", "head."],
    )?;
    let summary = adapt(
        model,
        &AdaptOptions {
            common,
            w_cl: recipe.w_cl,
        },
        |e| {
            eprintln!(
                "epoch {:>3}: train {:.4} (ce {:.4} rac {:.4}) | val ce {:.4} acc {:.3} | {:.2}s",
                e.epoch, e.train.total, e.train.ce, e.train.rac, e.val_loss, e.val_acc, e.seconds
            );
            std::ops::ControlFlow::Continue(())
        },
    )?;
    for (p, why) in &summary.skipped {
        eprintln!("left out {}: {why}", p.display());
    }
    let features = if summary.cached {
        "cached training and validation features"
    } else {
        "augmented training images through the frozen backbone, cached validation features"
    };
    println!(
        "trainable parameters: {} (adapter + projector + head); {features}: {:.1}s once, training: {:.1}s for {} epochs\nbest: {}",
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
    #[command(flatten)]
    pub common: TransferArgs,
}

/// Runs `fsvfm finetune`.
pub fn finetune_cmd(a: FinetuneArgs) -> Result<()> {
    use fsvfm_train::finetune::{FinetuneOptions, finetune};
    let (model, common, recipe) = prepare(
        &a.common,
        Method::Finetune,
        |vit, recipe| {
            let mut cfg = vit.clone();
            cfg.drop_path_rate = recipe.drop_path;
            cfg.validate()?;
            Ok(VisionTransformer::new(&cfg, &crate::runtime::device()))
        },
        &["fc_norm.", "head."],
    )?;
    let settings = fsvfm_train::AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: common.weight_decay,
    };
    let opts = FinetuneOptions {
        common,
        layer_decay: recipe.layer_decay,
    };
    let (epochs, best) = finetune(model, fsvfm_train::AdamW::new(settings), &opts, |e| {
        eprintln!(
            "epoch {:>3}: train {:.4} | val ce {:.4} acc {:.3} | {:.1} img/s",
            e.epoch, e.train_loss, e.val_loss, e.val_acc, e.images_per_s
        );
        std::ops::ControlFlow::Continue(())
    })?;
    println!(
        "fine-tuned {} epochs; best: {}",
        epochs.len(),
        best.display()
    );
    Ok(())
}

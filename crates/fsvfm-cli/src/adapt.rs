//! `fsvfm adapt` (FS-Adapter training on a frozen pre-trained backbone, cached features) and
//! `fsvfm finetune` (full fine-tuning with layer-wise lr decay).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use clap::Args;
use fsvfm::transfer::{Method, TransferEvent};

/// What `adapt` and `finetune` share.
#[derive(Args, Debug, Clone)]
pub struct TransferArgs {
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
    /// Output folder: checkpoint-min_val_loss.safetensors, fsvfm.json (the sidecar), log.jsonl, checkpoint-last/.
    #[arg(long)]
    pub output: PathBuf,
    /// Seed of the new layers, the validation split, the batch order, the augmentation draws and
    /// drop path.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in `--output` from its `checkpoint-last/` (same command and settings;
    /// the result equals an uninterrupted run).
    #[arg(long)]
    pub resume: bool,
    /// The tuning flags, which a protocol's `[options]` table also sets.
    #[command(flatten)]
    pub tuning: Tuning,
}

/// The flags that tune a transfer run. Unset numbers take the recipe's value. Also read from a
/// protocol's `[options]` table (the flag names without the dashes).
#[derive(Args, Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Tuning {
    /// Recipe: `dfd` (cross-dataset deepfake detection), `diff` (diffusion faces) — the paper's
    /// settings for the encoder's size (S/B/L) — `tiny` (the CPU demo), or a TOML file
    /// (`base = "dfd"` plus overrides). The resolved recipe is written to `recipe.toml`.
    #[arg(long, default_value = "dfd")]
    pub recipe: String,
    /// Held-out fraction when no `--val` is given.
    #[arg(value_parser = crate::flags::unit_open, long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Folder that DeepfakeBench frame paths are relative to.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Epochs.
    #[arg(value_parser = crate::flags::EPOCHS, long)]
    pub epochs: Option<usize>,
    /// Batch size (the recipes use the official effective batch, per-GPU × 2).
    #[arg(value_parser = crate::flags::TRAIN_BATCH, long)]
    pub batch_size: Option<usize>,
    /// Base learning rate, `lr = blr · batch / 256`.
    #[arg(value_parser = crate::flags::learning_rate, long)]
    pub blr: Option<f64>,
    /// Warmup epochs (then cosine to 1e-6).
    #[arg(value_parser = crate::flags::non_negative, long)]
    pub warmup_epochs: Option<f64>,
    /// AdamW weight decay.
    #[arg(value_parser = crate::flags::non_negative, long)]
    pub weight_decay: Option<f64>,
    /// Layer-wise lr decay (`finetune`; recipes: 0.6–0.95 by task and size).
    #[arg(value_parser = crate::flags::unit, long)]
    pub layer_decay: Option<f64>,
    /// Stochastic depth, rising linearly over the blocks (`finetune`; recipes: 0.1).
    #[arg(value_parser = crate::flags::unit_open, long)]
    pub drop_path: Option<f64>,
    /// Weight of the Real-Anchor Contrastive loss (`adapt`; recipes: 0.01–0.1).
    #[arg(value_parser = crate::flags::non_negative, long)]
    pub w_cl: Option<f64>,
    /// Normalisation (`vggface2` or a file); default: the pre-training run's.
    #[arg(long)]
    pub mean_std: Option<String>,
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
    #[arg(value_parser = crate::flags::unit, long)]
    pub reprob: Option<f64>,
    /// Mixup α (0 = off); overrides the preset.
    #[arg(value_parser = crate::flags::non_negative, long)]
    pub mixup: Option<f64>,
    /// CutMix α (0 = off); overrides the preset.
    #[arg(value_parser = crate::flags::non_negative, long)]
    pub cutmix: Option<f64>,
    /// Label smoothing; overrides the preset.
    #[arg(value_parser = crate::flags::unit_open, long)]
    pub smoothing: Option<f64>,
    /// Also write `augment_batch.png`: the first training batch as the model sees it.
    #[arg(long)]
    pub augment_picture: bool,
    /// Repeat the smaller class every epoch until real and fake are equally frequent (FSFM
    /// balances by extracting 4× more frames per real video; this does it at training time).
    #[arg(long)]
    pub balance: bool,
    /// No progress bar (the per-epoch lines stay).
    #[arg(long)]
    pub quiet: bool,
}

impl Default for Tuning {
    /// The flags' own defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            tuning: Tuning,
        }
        <Only as clap::Parser>::parse_from(["defaults"]).tuning
    }
}

/// Named training augmentations (`--augment`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentPreset {
    /// The official DfD/DiFF recipe.
    Official,
    /// The official FAS recipe.
    Fas,
    /// Resize only.
    None,
}

impl TransferArgs {
    /// The library job these flags describe.
    fn job(&self, method: Method) -> Result<fsvfm::transfer::TransferJob> {
        use fsvfm::transfer::{AugmentPreset as P, RecipeOverrides, TransferJob};
        let t = &self.tuning;
        let (model, mean_std) =
            crate::eval::model_and_mean_std(self.model.as_deref(), t.mean_std.as_deref())?;
        Ok(TransferJob {
            model,
            mean_std,
            recipe: t.recipe.clone(),
            overrides: RecipeOverrides {
                epochs: t.epochs,
                batch_size: t.batch_size,
                blr: t.blr,
                warmup_epochs: t.warmup_epochs,
                weight_decay: t.weight_decay,
                layer_decay: t.layer_decay,
                drop_path: t.drop_path,
                w_cl: t.w_cl,
                augment: t.augment.map(|a| match a {
                    AugmentPreset::Official => P::Official,
                    AugmentPreset::Fas => P::Fas,
                    AugmentPreset::None => P::None,
                }),
                rand_augment: t.aa.clone(),
                reprob: t.reprob,
                mixup: t.mixup,
                cutmix: t.cutmix,
                smoothing: t.smoothing,
            },
            val: self.val.clone(),
            val_fraction: t.val_fraction,
            root: t.root.clone(),
            seed: self.seed,
            augment_picture: t.augment_picture,
            resume: self.resume,
            balance: t.balance,
            device: Some(crate::runtime::device()),
            ..TransferJob::new(method, &self.checkpoint, &self.data, &self.output)
        })
    }

    /// Runs the job, its messages and epochs on stderr, a progress bar unless `--quiet`.
    fn run(&self, method: Method) -> Result<fsvfm::transfer::TransferSummary> {
        let observer = Arc::new(Printer {
            bar: (!self.tuning.quiet).then(|| Mutex::new(None)),
        });
        Ok(fsvfm::transfer::transfer(&self.job(method)?, observer)?)
    }
}

/// Prints a transfer run's events: messages and epoch lines on stderr, steps as a progress bar
/// (restarted at step 1, cleared at the last step so the epoch's line follows).
struct Printer {
    bar: Option<Mutex<Option<indicatif::ProgressBar>>>,
}

impl fsvfm::transfer::Observer for Printer {
    fn event(&self, event: TransferEvent<'_>) {
        match event {
            TransferEvent::Started(text) => eprintln!("{text}"),
            TransferEvent::LeftOut { path, reason } => eprintln!("left out {path}: {reason}"),
            TransferEvent::Step { done, steps } => {
                let Some(bar) = &self.bar else { return };
                let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
                let b = bar.get_or_insert_with(|| crate::pretrain::progress_bar(steps as u64));
                b.set_position(done as u64);
                if done == steps {
                    b.finish_and_clear();
                    *bar = None;
                }
            }
            TransferEvent::AdapterEpoch(e) => eprintln!(
                "epoch {:>3}: train {:.4} (ce {:.4} rac {:.4}) | val ce {:.4} acc {:.3} | {:.2}s",
                e.epoch, e.train.total, e.train.ce, e.train.rac, e.val_loss, e.val_acc, e.seconds
            ),
            TransferEvent::FinetuneEpoch(e) => eprintln!(
                "epoch {:>3}: train {:.4} | val ce {:.4} acc {:.3} | {:.1} img/s",
                e.epoch, e.train_loss, e.val_loss, e.val_acc, e.images_per_s
            ),
            _ => {}
        }
    }
}

/// Arguments of `fsvfm adapt`.
#[derive(Args, Debug)]
pub struct AdaptArgs {
    #[command(flatten)]
    pub common: TransferArgs,
}

/// Runs `fsvfm adapt`.
pub fn adapt_cmd(a: AdaptArgs) -> Result<()> {
    let fsvfm::transfer::TransferSummary::Adapter(summary) = a.common.run(Method::Adapter)? else {
        unreachable!("an adapter job gives an adapter summary")
    };
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
    let fsvfm::transfer::TransferSummary::Finetune { epochs, best } =
        a.common.run(Method::Finetune)?
    else {
        unreachable!("a fine-tuning job gives a fine-tuning summary")
    };
    println!(
        "fine-tuned {} epochs; best: {}",
        epochs.len(),
        best.display()
    );
    Ok(())
}

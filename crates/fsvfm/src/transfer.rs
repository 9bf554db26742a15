//! Transfer as a library call: full fine-tuning or an FS-Adapter on a pre-trained encoder, from
//! typed options ([`TransferJob`]), reporting progress to an [`Observer`]. `fsvfm finetune` and
//! `fsvfm adapt` parse their flags into a [`TransferJob`] and call [`transfer`].

use std::path::PathBuf;
use std::sync::Arc;

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use fsvfm_data::MeanStd;
use fsvfm_model::{
    AdapterConfig, FsAdapterClassifier, LoadMode, VisionTransformer, VitConfig, WeightFile,
};
use fsvfm_train::adapt::{AdaptEpoch, AdaptSummary};
use fsvfm_train::batches::Augmentation;
use fsvfm_train::finetune::FinetuneEpoch;
use fsvfm_train::transfer::{StepHook, TransferOptions, split_validation};
pub use fsvfm_train::transfer_recipe::{Method, TransferRecipe};

use crate::{Error, Result};

/// A named training augmentation, replacing the recipe's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugmentPreset {
    /// The official DfD/DiFF one: RandomResizedCrop, flip, RandAugment, random erasing,
    /// Mixup/CutMix, label smoothing 0.1.
    Official,
    /// The official anti-spoofing one: saturation jitter, flip, resize.
    Fas,
    /// Resize only (`adapt` then caches the backbone's features once).
    None,
}

/// Changes to the recipe; `None` keeps the recipe's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecipeOverrides {
    /// Epochs.
    pub epochs: Option<usize>,
    /// Batch size.
    pub batch_size: Option<usize>,
    /// Base learning rate (`lr = blr · batch / 256`).
    pub blr: Option<f64>,
    /// Warmup epochs.
    pub warmup_epochs: Option<f64>,
    /// AdamW weight decay.
    pub weight_decay: Option<f64>,
    /// Layer-wise lr decay (fine-tuning).
    pub layer_decay: Option<f64>,
    /// Stochastic depth of the last block (fine-tuning).
    pub drop_path: Option<f64>,
    /// Weight of the Real-Anchor Contrastive loss (adapter).
    pub w_cl: Option<f64>,
    /// An augmentation preset instead of the recipe's.
    pub augment: Option<AugmentPreset>,
    /// RandAugment in timm syntax (`rand-m9-mstd0.5-inc1`), or `none`.
    pub rand_augment: Option<String>,
    /// Random-erasing probability.
    pub reprob: Option<f64>,
    /// Mixup α (0 = off; > 0 turns mixing on).
    pub mixup: Option<f64>,
    /// CutMix α (0 = off; > 0 turns mixing on).
    pub cutmix: Option<f64>,
    /// Label smoothing.
    pub smoothing: Option<f64>,
}

impl RecipeOverrides {
    /// The recipe `name_or_path` (`dfd`, `diff`, `tiny` or a TOML file) for `method` and an
    /// encoder of width `embed_dim`, with these overrides applied and validated.
    pub fn recipe(
        &self,
        name_or_path: &str,
        method: Method,
        embed_dim: usize,
    ) -> Result<TransferRecipe> {
        let mut r = TransferRecipe::load(name_or_path, method, embed_dim)?;
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
        r.validate().map_err(Error::Invalid)?;
        Ok(r)
    }

    /// `base` (the recipe's augmentation) after the preset and the individual overrides.
    fn augmentation(&self, base: Augmentation) -> Result<Augmentation> {
        let mut aug = match self.augment {
            None => base,
            Some(AugmentPreset::Official) => Augmentation::default(),
            Some(AugmentPreset::Fas) => Augmentation::fas(),
            Some(AugmentPreset::None) => Augmentation::none(0.1),
        };
        if let Some(aa) = &self.rand_augment {
            aug.image.rand_augment = match aa.as_str() {
                "none" | "" => None,
                s => Some(s.parse().map_err(Error::Invalid)?),
            };
        }
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(Error::Invalid(format!("{name} must be in [0, 1], got {v}")))
            }
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
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(Error::Invalid(format!("{name} must be ≥ 0, got {v}")));
                }
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

/// One transfer run: what [`transfer`] trains, on what, into where.
#[derive(Debug, Clone)]
pub struct TransferJob {
    /// Full fine-tuning or FS-Adapter.
    pub method: Method,
    /// The encoder: a pre-training checkpoint (ours, or an official `.pth`).
    pub checkpoint: PathBuf,
    /// Its architecture (default: its sidecar, else its tensor shapes).
    pub model: Option<VitConfig>,
    /// Its normalisation (default: its sidecar; needed for official files).
    pub mean_std: Option<MeanStd>,
    /// The recipe: `dfd`, `diff`, `tiny`, or a TOML file.
    pub recipe: String,
    /// Changes to the recipe.
    pub overrides: RecipeOverrides,
    /// Training images: ImageFolder, JSONL manifest or DeepfakeBench JSON (`train` split).
    pub data: PathBuf,
    /// Validation images (`val` split); default: `val_fraction` of `data` held out.
    pub val: Option<PathBuf>,
    /// Held-out fraction without `val`.
    pub val_fraction: f64,
    /// Folder that DeepfakeBench frame paths are relative to.
    pub root: Option<PathBuf>,
    /// Output folder (checkpoints, sidecar, recipe, log).
    pub output: PathBuf,
    /// Seed of the new layers, the split, the batch order, augmentation and drop path.
    pub seed: u64,
    /// Also write `augment_batch.png`.
    pub augment_picture: bool,
    /// Continue the run in `output` from its `checkpoint-last/`.
    pub resume: bool,
    /// Repeat the smaller class each epoch until real and fake are equally frequent.
    pub balance: bool,
    /// Compute device (default: the CPU).
    pub device: Option<Device>,
}

impl TransferJob {
    /// A job with the `dfd` recipe, 10 % of the data held out for validation, seed 0.
    pub fn new(
        method: Method,
        checkpoint: impl Into<PathBuf>,
        data: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
    ) -> Self {
        TransferJob {
            method,
            checkpoint: checkpoint.into(),
            model: None,
            mean_std: None,
            recipe: "dfd".into(),
            overrides: RecipeOverrides::default(),
            data: data.into(),
            val: None,
            val_fraction: 0.1,
            root: None,
            output: output.into(),
            seed: 0,
            augment_picture: false,
            resume: false,
            balance: false,
            device: None,
        }
    }
}

/// Something a transfer run reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransferEvent<'a> {
    /// The run is set up: a one-line summary (encoder, normalisation, data, recipe).
    Started(&'a str),
    /// An image left out, and why.
    LeftOut {
        /// The image or manifest line.
        path: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A training step of the current epoch is done.
    Step {
        /// Steps done in this epoch.
        done: usize,
        /// Steps per epoch.
        steps: usize,
    },
    /// An FS-Adapter epoch is done.
    AdapterEpoch(&'a AdaptEpoch),
    /// A fine-tuning epoch is done.
    FinetuneEpoch(&'a FinetuneEpoch),
}

/// Receives a run's [`TransferEvent`]s (progress bars, logs). Every method has a default that
/// ignores the event.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: TransferEvent<'_>) {
        let _ = event;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {}

/// What a transfer run produced.
#[derive(Debug)]
pub enum TransferSummary {
    /// An FS-Adapter run.
    Adapter(AdaptSummary),
    /// A fine-tuning run: its epochs and the best checkpoint.
    Finetune {
        /// The epochs.
        epochs: Vec<FinetuneEpoch>,
        /// `checkpoint-min_val_loss.safetensors`.
        best: PathBuf,
    },
}

impl TransferSummary {
    /// The best checkpoint (lowest validation loss), what [`crate::Detector::load`] takes.
    pub fn best(&self) -> &std::path::Path {
        match self {
            TransferSummary::Adapter(s) => &s.best,
            TransferSummary::Finetune { best, .. } => best,
        }
    }
}

/// Trains `job`: loads the encoder (strictly, but for the fresh layers), reads the data, writes
/// `recipe.toml`, then fine-tunes or trains the adapter, writing the checkpoints and the sidecar
/// `fsvfm.json` (an interrupted run continues with `resume`).
pub fn transfer(job: &TransferJob, observer: Arc<dyn Observer>) -> Result<TransferSummary> {
    let wf = crate::checkpoint::open_model(&job.checkpoint)?;
    let described = crate::describe(&wf, job.model.as_ref(), job.mean_std)?;
    let mean_std = described.require_mean_std(&job.checkpoint)?;
    let mut vit = described.model.clone();
    vit.num_classes = 2;
    vit.global_pool = true;
    let recipe = job
        .overrides
        .recipe(&job.recipe, job.method, vit.embed_dim)?;
    let device = job.device.clone().unwrap_or_else(fsvfm_model::cpu_device);
    // The new layers are drawn from the seeded device generator.
    device.seed(job.seed);
    let load = |what: &str| format!("{what} from {}", described.source_text());
    match job.method {
        Method::Adapter => {
            let cfg = AdapterConfig::new(vit.clone());
            cfg.validate()?;
            let (model, opts) = prepare(
                job,
                &wf,
                FsAdapterClassifier::new(&cfg, &device),
                &["fc_norm.", "adapter.", "projector.", "head."],
                (&vit, mean_std, &recipe, device, &load("normalisation")),
                &observer,
            )?;
            let on = observer.clone();
            let summary = fsvfm_train::adapt::adapt(
                model,
                &fsvfm_train::adapt::AdaptOptions {
                    common: opts,
                    w_cl: recipe.w_cl,
                },
                |e| {
                    on.event(TransferEvent::AdapterEpoch(e));
                    std::ops::ControlFlow::Continue(())
                },
            )?;
            for (p, why) in &summary.skipped {
                observer.event(TransferEvent::LeftOut {
                    path: &p.display().to_string(),
                    reason: why,
                });
            }
            Ok(TransferSummary::Adapter(summary))
        }
        Method::Finetune => {
            let mut cfg = vit.clone();
            cfg.drop_path_rate = recipe.drop_path;
            cfg.validate()?;
            let (model, opts) = prepare(
                job,
                &wf,
                VisionTransformer::new(&cfg, &device),
                &["fc_norm.", "head."],
                (&vit, mean_std, &recipe, device, &load("normalisation")),
                &observer,
            )?;
            let settings = fsvfm_train::AdamWSettings {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: opts.weight_decay,
            };
            let on = observer.clone();
            let (epochs, best) = fsvfm_train::finetune::finetune(
                model,
                fsvfm_train::AdamW::new(settings),
                &fsvfm_train::finetune::FinetuneOptions {
                    common: opts,
                    layer_decay: recipe.layer_decay,
                },
                |e| {
                    on.event(TransferEvent::FinetuneEpoch(e));
                    std::ops::ControlFlow::Continue(())
                },
            )?;
            Ok(TransferSummary::Finetune { epochs, best })
        }
    }
}

/// Loads the encoder into `fresh` (strict except for the layers under `new_prefixes`), reads the
/// data, writes `recipe.toml`, and builds the trainer options.
fn prepare<M: Module + ModuleSnapshot>(
    job: &TransferJob,
    wf: &WeightFile,
    fresh: M,
    new_prefixes: &[&str],
    (vit, mean_std, recipe, device, norm_source): (
        &VitConfig,
        MeanStd,
        &TransferRecipe,
        Device,
        &str,
    ),
    observer: &Arc<dyn Observer>,
) -> Result<(M, TransferOptions)> {
    let (model, report) = wf.load_into(fresh, LoadMode::Partial)?;
    let missing: Vec<_> = report
        .missing
        .iter()
        .filter(|k| !new_prefixes.iter().any(|p| k.starts_with(p)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Checkpoint {
            path: job.checkpoint.clone(),
            reason: format!("lacks encoder weights {missing:?}: is --model the right size?"),
        });
    }
    let read = |p: &PathBuf, split: &str| {
        fsvfm_data::read_eval_set(p, split, job.root.as_deref()).map_err(|reason| Error::Input {
            path: p.clone(),
            reason,
        })
    };
    let (train, mut skipped) = read(&job.data, "train")?;
    let (train, val) = match &job.val {
        Some(v) => {
            let (val, k) = read(v, "val")?;
            skipped.extend(k);
            (train, val)
        }
        None => {
            if !(0.0..1.0).contains(&job.val_fraction) {
                return Err(Error::Invalid("--val-fraction must be in [0, 1)".into()));
            }
            split_validation(train, job.val_fraction, job.seed)
        }
    };
    for k in &skipped {
        observer.event(TransferEvent::LeftOut {
            path: &k.path,
            reason: &k.reason,
        });
    }
    observer.event(TransferEvent::Started(&format!(
        "encoder from {} ({report}); {norm_source}; {} training / {} validation images; recipe {}: {} epochs, batch {}, blr {}",
        job.checkpoint.display(),
        train.len(),
        val.len(),
        recipe.name,
        recipe.epochs,
        recipe.batch_size,
        recipe.blr
    )));
    std::fs::create_dir_all(&job.output).map_err(|e| Error::Input {
        path: job.output.clone(),
        reason: format!("cannot create the output folder: {e}"),
    })?;
    // A folder that holds a run keeps its recipe: a resume has the same one, and a run refused
    // for want of --resume must not overwrite it.
    if !job
        .output
        .join(fsvfm_train::transfer::LAST)
        .join("state.json")
        .is_file()
    {
        fsvfm_data::write_atomic(
            &job.output.join("recipe.toml"),
            recipe.to_toml().as_bytes(),
            false,
        )
        .map_err(|e| Error::Input {
            path: job.output.join("recipe.toml"),
            reason: e.to_string(),
        })?;
    }
    let on = observer.clone();
    let opts = TransferOptions {
        train,
        val,
        output: job.output.clone(),
        img_size: vit.img_size,
        model: vit.clone(),
        mean_std,
        epochs: recipe.epochs,
        batch_size: recipe.batch_size,
        blr: recipe.blr,
        warmup_epochs: recipe.warmup_epochs,
        weight_decay: recipe.weight_decay,
        seed: job.seed,
        augment: recipe.augment.clone(),
        augment_picture: job.augment_picture,
        resume: job.resume,
        balance: job.balance,
        on_step: Some(StepHook(Arc::new(move |done, steps| {
            on.event(TransferEvent::Step { done, steps })
        }))),
        device,
    };
    Ok((model, opts))
}

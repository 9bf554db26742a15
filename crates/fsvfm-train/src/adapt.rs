//! FS-Adapter training (spec §7): a frozen backbone, and only the adapter, projector and head
//! trained with `CE + w_cl · RealAnchorConLoss` (τ = 0.07; the CE on Mixup/CutMix soft targets,
//! the Real-Anchor loss on the pre-mix labels, as the official code).
//!
//! Two paths, chosen by whether the training data is random ([`crate::batches::Augmentation::is_random`]):
//! - **cached features**: with augmentation off the frozen backbone's pooled feature of an image
//!   never changes, so it is computed once and every epoch runs on `[N, D]` vectors;
//! - **augmented**: every step decodes and augments its images and runs the frozen backbone on
//!   them (forward only, no graph), then trains the heads on those features.
//!
//! Class order is the official one (ImageFolder order `fake`, `real`): class 0 = fake, class 1 =
//! real, and the Real-Anchor loss's real class is 1, so checkpoints are interchangeable with the
//! official code and `fsvfm eval` scores `softmax[:, 0]` = P(fake).

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use fsvfm_data::{EvalSample, MeanStd, load_normalized};
use fsvfm_model::FsAdapterClassifier;
use fsvfm_model::loss::{real_anchor_con_loss, smoothed_cross_entropy, soft_target_cross_entropy};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::batches::{epoch_order, smoothed_targets};
use crate::optim::{AdamW, AdamWSettings, GradBuffer};
use crate::params::update_in_place;
use crate::transfer::{StepHook, TransferOptions, save_module};

/// Official class index of fake images.
pub const FAKE_CLASS: usize = 0;
/// Official class index of real images (the Real-Anchor loss's anchor class).
pub const REAL_CLASS: usize = 1;

/// The official class index of a label (1 = fake → class 0, 0 = real → class 1).
pub fn official_class(label: u8) -> usize {
    if label == 1 { FAKE_CLASS } else { REAL_CLASS }
}

/// The validation readout of two-class logits `[N, 2]` in the official class order: plain
/// cross-entropy (no smoothing, the model-selection loss) and P(fake) per row.
pub fn validation_readout(logits: Tensor<2>, targets: &[usize]) -> (f64, Vec<f64>) {
    let ce = smoothed_cross_entropy(logits.clone(), targets, 0.0).into_scalar::<f32>() as f64;
    let p: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    (ce, p.chunks(2).map(|r| r[FAKE_CLASS] as f64).collect())
}

/// The loss terms of one adapter batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdapterLoss {
    /// Cross-entropy (label-smoothed).
    pub ce: f64,
    /// Real-Anchor Contrastive loss.
    pub rac: f64,
    /// `ce + w_cl · rac`.
    pub total: f64,
}

/// Trains the adapter, projector and head of an [`FsAdapterClassifier`] on pooled features.
#[derive(Debug)]
pub struct AdapterTrainer {
    /// The classifier, on the autodiff device (its backbone is never run here).
    pub model: FsAdapterClassifier,
    /// AdamW over the head parameters.
    pub optim: AdamW,
    /// Weight of the Real-Anchor loss.
    pub w_cl: f64,
    /// Label smoothing of [`AdapterTrainer::step`] (hard labels).
    pub smoothing: f64,
    /// Temperature of the Real-Anchor loss.
    pub tau: f64,
    device: Device,
}

impl AdapterTrainer {
    /// Puts `model` on the autodiff version of `device`.
    pub fn new(model: FsAdapterClassifier, optim: AdamW, w_cl: f64, device: &Device) -> Self {
        Self {
            model: model.to_device(&device.clone().autodiff()).valid().train(),
            optim,
            w_cl,
            smoothing: 0.1,
            tau: 0.07,
            device: device.clone(),
        }
    }

    /// The three loss tensors for features `h [N, D]` (row-major), soft targets `[N, 2]` and the
    /// official class indices before mixing.
    pub fn losses(&self, h: &[f32], soft: &[f32], classes: &[usize]) -> [Tensor<1>; 3] {
        let n = classes.len();
        let d = h.len() / n.max(1);
        let x = Tensor::<2>::from_data(
            TensorData::new(h.to_vec(), [n, d]),
            &self.device.clone().autodiff(),
        );
        let out = self.model.forward_head(x);
        let ce = soft_target_cross_entropy(out.logits, soft);
        let real: Vec<bool> = classes.iter().map(|&t| t == REAL_CLASS).collect();
        let rac = real_anchor_con_loss(out.contrastive, &real, self.tau);
        let total = ce.clone() + rac.clone().mul_scalar(self.w_cl);
        [ce, rac, total]
    }

    /// One AdamW step at `lr` on a batch with hard class indices (label-smoothed by
    /// [`AdapterTrainer::smoothing`]); returns its losses (before the step).
    pub fn step(&mut self, h: &[f32], targets: &[usize], lr: f64) -> AdapterLoss {
        let soft = smoothed_targets(targets, self.smoothing);
        self.step_soft(h, &soft, targets, lr)
    }

    /// [`AdapterTrainer::step`] with soft targets `[N, 2]` and the pre-mix class indices.
    pub fn step_soft(
        &mut self,
        h: &[f32],
        soft: &[f32],
        classes: &[usize],
        lr: f64,
    ) -> AdapterLoss {
        let [ce, rac, total] = self.losses(h, soft, classes);
        let v = |t: &Tensor<1>| t.clone().inner().into_scalar::<f32>() as f64;
        let loss = AdapterLoss {
            ce: v(&ce),
            rac: v(&rac),
            total: v(&total),
        };
        if loss.total.is_finite() {
            let mut grads = GradBuffer::new();
            grads.add(&self.model, total.backward());
            // A non-finite gradient would poison every later step: skip the update instead.
            if grads.global_norm().is_finite() {
                let optim = &mut self.optim;
                update_in_place(&mut self.model, |model| optim.update(model, &grads, lr));
            }
        }
        loss
    }

    /// Plain cross-entropy (no smoothing) and P(fake) on features, for validation.
    pub fn evaluate(&self, h: &[f32], targets: &[usize]) -> (f64, Vec<f64>) {
        let n = targets.len();
        let d = h.len() / n.max(1);
        let model = self.model.valid();
        let x = Tensor::<2>::from_data(TensorData::new(h.to_vec(), [n, d]), &self.device);
        validation_readout(model.forward_head(x).logits, targets)
    }
}

/// Pooled features of the frozen backbone for every image (`[N, D]` row-major), computed in
/// batches on the plain device; images that cannot be read are returned as `(index, reason)`.
pub fn extract_features(
    model: &FsAdapterClassifier,
    images: &[PathBuf],
    size: usize,
    norm: &MeanStd,
    batch: usize,
    device: &Device,
) -> (Vec<f32>, Vec<usize>, Vec<(usize, String)>) {
    use rayon::prelude::*;
    let model = model.valid();
    let (mut feats, mut kept, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for start in (0..images.len()).step_by(batch.max(1)) {
        let end = (start + batch.max(1)).min(images.len());
        let decoded: Vec<Result<Vec<f32>, String>> = images[start..end]
            .par_iter()
            .map(|p| load_normalized(p, size, norm))
            .collect();
        let mut px = Vec::new();
        let mut idx = Vec::new();
        for (k, d) in decoded.into_iter().enumerate() {
            match d {
                Ok(x) => {
                    px.extend(x);
                    idx.push(start + k);
                }
                Err(e) => bad.push((start + k, e)),
            }
        }
        if idx.is_empty() {
            continue;
        }
        feats.extend(backbone_features(
            &model,
            px,
            [idx.len(), 3, size, size],
            device,
        ));
        kept.extend(idx);
    }
    (feats, kept, bad)
}

/// The frozen backbone's pooled features `[N, D]` (row-major) of normalised images `dims`.
fn backbone_features(
    model: &FsAdapterClassifier,
    images: Vec<f32>,
    dims: [usize; 4],
    device: &Device,
) -> Vec<f32> {
    let x = Tensor::<4>::from_data(TensorData::new(images, dims), device);
    model
        .forward_features(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

/// Options of [`adapt`].
#[derive(Debug, Clone)]
pub struct AdaptOptions {
    /// Data, output, schedule and seed.
    pub common: TransferOptions,
    /// Weight of the Real-Anchor loss.
    pub w_cl: f64,
}

/// One epoch of adapter training, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdaptEpoch {
    /// Epoch.
    pub epoch: usize,
    /// Mean training loss terms.
    pub train: AdapterLoss,
    /// Validation cross-entropy (model selection).
    pub val_loss: f64,
    /// Validation accuracy at P(fake) ≥ 0.5.
    pub val_acc: f64,
    /// Batches with a non-finite loss (left out of the means, no update).
    pub skipped: usize,
    /// Seconds.
    pub seconds: f64,
}

/// The result of [`adapt`].
#[derive(Debug, Clone)]
pub struct AdaptSummary {
    /// Trainable parameters.
    pub trainable: usize,
    /// Seconds spent extracting features once (validation; and training when cached).
    pub feature_seconds: f64,
    /// Whether training ran on cached features (augmentation off).
    pub cached: bool,
    /// Seconds of all training epochs.
    pub train_seconds: f64,
    /// The epochs.
    pub epochs: Vec<AdaptEpoch>,
    /// `checkpoint-min_val_loss.safetensors`.
    pub best: PathBuf,
    /// Images left out (unreadable), with reasons.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Trains the FS-Adapter of `model` (backbone already loaded), on cached features when the
/// training data is not random, else on augmented images through the frozen backbone; writes
/// `checkpoint-min_val_loss.safetensors` (official keys), `pretrain_ds_mean_std.txt`,
/// `log.jsonl` and `checkpoint-last/` (resume) into the output folder. `on_epoch` sees every epoch
/// after its checkpoint is written and may stop the run there (`ControlFlow::Break`).
pub fn adapt(
    model: FsAdapterClassifier,
    opts: &AdaptOptions,
    mut on_epoch: impl FnMut(&AdaptEpoch) -> std::ops::ControlFlow<()>,
) -> Result<AdaptSummary, TrainError> {
    let (w_cl, opts) = (opts.w_cl, &opts.common);
    let settings = opts.settings(serde_json::json!({ "adapter": { "w_cl": w_cl } }));
    let (best, mut log, resumed, _lock) =
        opts.prepare_output(crate::sidecar::ModelKind::Adapter, &settings, &opts.device)?;
    let (model, optim, start, mut best_val) = match resumed {
        Some(r) => (
            restore_heads(opts, model)?,
            Some(r.optim),
            r.state.next_epoch,
            r.state.best_val.unwrap_or(f64::INFINITY),
        ),
        None => (model, None, 0, f64::INFINITY),
    };
    let cached = !opts.augment.is_random();
    let backbone = model.valid();
    let t0 = Instant::now();
    let mut skipped = Vec::new();
    let mut features = |set: &[EvalSample]| {
        let paths: Vec<PathBuf> = set.iter().map(|s| s.image.clone()).collect();
        let (f, kept, bad) = extract_features(
            &backbone,
            &paths,
            opts.img_size,
            &opts.mean_std,
            32,
            &opts.device,
        );
        skipped.extend(bad.into_iter().map(|(i, e)| (paths[i].clone(), e)));
        let targets: Vec<usize> = kept.iter().map(|&i| official_class(set[i].label)).collect();
        (f, targets)
    };
    let (val_h, val_y) = features(&opts.val);
    let (train_h, train_y) = if cached {
        features(&opts.train)
    } else {
        (Vec::new(), Vec::new())
    };
    let feature_seconds = t0.elapsed().as_secs_f64();
    // The classes of what the steps index: the kept features, or the images themselves.
    let train_classes: Vec<usize> = if cached {
        train_y.clone()
    } else {
        opts.train.iter().map(|x| official_class(x.label)).collect()
    };
    let first = epoch_order(&train_classes, opts.seed, 0, opts.balance);
    let n_train = first.len();
    if n_train == 0 || val_y.is_empty() {
        return Err(TrainError::Data(
            "no readable training or validation images".into(),
        ));
    }
    let d = val_h.len() / val_y.len();
    let adamw = AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: opts.weight_decay,
    };
    // Only the adapter, projector and head learn; the backbone never enters the graph here, and
    // its parameters are frozen so the optimiser would skip them anyway.
    let trainable = model.trainable_param_count();
    let model = freeze_backbone(model);
    let optim = optim.unwrap_or_else(|| AdamW::new(adamw));
    let mut trainer = AdapterTrainer::new(model, optim, w_cl, &opts.device);
    trainer.smoothing = opts.augment.mixup.label_smoothing;
    let batch = opts.batch_size.min(n_train).max(1);
    let steps = n_train / batch;
    let schedule = opts.schedule(batch);
    let (mut epochs, t_train) = (Vec::new(), Instant::now());
    for epoch in start..opts.epochs {
        let te = Instant::now();
        let order = epoch_order(&train_classes, opts.seed, epoch as u64, opts.balance);
        let (mut sum, mut finite) = ([0.0f64; 3], 0usize);
        for step in 0..steps {
            let idx = &order[step * batch..(step + 1) * batch];
            let lr = schedule.at(epoch as f64 + step as f64 / steps as f64);
            let l = if cached {
                let mut h = Vec::with_capacity(idx.len() * d);
                for &i in idx {
                    h.extend_from_slice(&train_h[i * d..(i + 1) * d]);
                }
                let y: Vec<usize> = idx.iter().map(|&i| train_y[i]).collect();
                trainer.step(&h, &y, lr)
            } else {
                let b = opts.train_batch(idx, epoch, step)?;
                let h = backbone_features(&backbone, b.images, b.dims, &opts.device);
                trainer.step_soft(&h, &b.targets, &b.classes, lr)
            };
            StepHook::call(&opts.on_step, step + 1, steps);
            if l.total.is_finite() {
                sum[0] += l.ce;
                sum[1] += l.rac;
                sum[2] += l.total;
                finite += 1;
            }
        }
        let (val_loss, p) = trainer.evaluate(&val_h, &val_y);
        let correct = p
            .iter()
            .zip(&val_y)
            .filter(|(p, y)| (**p >= 0.5) == (**y == FAKE_CLASS))
            .count();
        let k = finite.max(1) as f64;
        let e = AdaptEpoch {
            epoch,
            train: AdapterLoss {
                ce: sum[0] / k,
                rac: sum[1] / k,
                total: sum[2] / k,
            },
            val_loss,
            val_acc: correct as f64 / val_y.len() as f64,
            skipped: steps - finite,
            seconds: te.elapsed().as_secs_f64(),
        };
        let m = &trainer.model;
        let weights = |dir: &std::path::Path| {
            save_module(&m.adapter, dir, "adapter.safetensors")?;
            save_module(&m.projector, dir, "projector.safetensors")?;
            save_module(&m.head, dir, "head.safetensors")
        };
        let at = (epoch, val_loss, &mut best_val);
        opts.end_epoch(
            m,
            weights,
            &trainer.optim,
            at,
            &best,
            &settings,
            &mut log,
            &e,
        )?;
        let stop = on_epoch(&e).is_break();
        epochs.push(e);
        if stop {
            break;
        }
    }
    Ok(AdaptSummary {
        trainable,
        feature_seconds,
        cached,
        train_seconds: t_train.elapsed().as_secs_f64(),
        epochs,
        best,
        skipped,
    })
}

/// The adapter, projector and head of `checkpoint-last/` on top of `model`'s backbone.
fn restore_heads(
    opts: &TransferOptions,
    mut model: FsAdapterClassifier,
) -> Result<FsAdapterClassifier, TrainError> {
    model.adapter = opts.restore(model.adapter, "adapter.safetensors")?;
    model.projector = opts.restore(model.projector, "projector.safetensors")?;
    model.head = opts.restore(model.head, "head.safetensors")?;
    Ok(model)
}

/// Marks every parameter outside `adapter`, `projector` and `head` as not trainable (the official
/// `--trainable_modules fs-adapter`; `fc_norm` stays at its identity initialisation).
fn freeze_backbone(model: FsAdapterClassifier) -> FsAdapterClassifier {
    let FsAdapterClassifier {
        cls_token,
        pos_embed,
        patch_embed,
        blocks,
        fc_norm,
        adapter,
        projector,
        head,
    } = model;
    FsAdapterClassifier {
        cls_token: cls_token.set_require_grad(false),
        pos_embed: pos_embed.set_require_grad(false),
        patch_embed: patch_embed.no_grad(),
        blocks: blocks.into_iter().map(|b| b.no_grad()).collect(),
        fc_norm: fc_norm.no_grad(),
        adapter,
        projector,
        head,
    }
}

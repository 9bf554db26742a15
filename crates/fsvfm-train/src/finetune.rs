//! Full fine-tuning of the mean-pooled ViT classifier (spec §6.0): encoder from a pre-training
//! checkpoint, fresh `fc_norm` + head, trainable `pos_embed`, drop path, BEiT layer-wise lr decay,
//! AdamW (no decay on 1-D parameters, `pos_embed`, `cls_token`), label-smoothed cross-entropy,
//! warmup + cosine per iteration, selection by the lowest validation loss.
//!
//! Training batches go through [`crate::batches`] (RandomResizedCrop, flip, RandAugment, random
//! erasing, Mixup/CutMix with soft targets; or none), validation images are only resized. Class
//! order is the official one (0 = fake, 1 = real).

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use fsvfm_data::{EvalSample, MeanStd, load_normalized};
use fsvfm_model::VisionTransformer;
use fsvfm_model::loss::soft_target_cross_entropy;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::adapt::{FAKE_CLASS, official_class};
use crate::batches::{epoch_order, smoothed_targets};
use crate::optim::{AdamW, GradBuffer};
use crate::params::update_in_place;
use crate::transfer::{StepHook, TransferOptions, epoch_seed, save_module};

/// BEiT layer id of a parameter (burn path names): `cls_token`, `pos_embed`, `patch_embed.*` → 0;
/// `blocks.k.*` → k + 1; everything else (`fc_norm`, `head`) → `depth + 1`.
pub fn layer_id(name: &str, depth: usize) -> usize {
    if name == "cls_token" || name == "pos_embed" || name.starts_with("patch_embed") {
        0
    } else if let Some(rest) = name.strip_prefix("blocks.") {
        rest.split('.')
            .next()
            .and_then(|k| k.parse::<usize>().ok())
            .map_or(depth + 1, |k| k + 1)
    } else {
        depth + 1
    }
}

/// The lr multiplier `layer_decay^(depth + 1 − layer_id)` and whether weight decay applies (not on
/// 1-D parameters, `pos_embed` and `cls_token`: `util/lr_decay.param_groups_lrd`).
pub fn finetune_group(name: &str, shape: &[usize], depth: usize, layer_decay: f64) -> (f64, bool) {
    let scale = layer_decay.powi((depth + 1 - layer_id(name, depth)) as i32);
    let decayed = !(shape.len() == 1 || name == "pos_embed" || name == "cls_token");
    (scale, decayed)
}

/// A classifier being fine-tuned.
#[derive(Debug)]
pub struct FinetuneTrainer {
    /// The model, on the autodiff device.
    pub model: VisionTransformer,
    /// AdamW state.
    pub optim: AdamW,
    /// Layer-wise lr decay.
    pub layer_decay: f64,
    /// Label smoothing of [`FinetuneTrainer::step`] (hard labels).
    pub smoothing: f64,
    depth: usize,
    device: Device,
}

impl FinetuneTrainer {
    /// Puts `model` (with `depth` blocks) on the autodiff version of `device`.
    pub fn new(model: VisionTransformer, optim: AdamW, layer_decay: f64, device: &Device) -> Self {
        let depth = model.blocks.len();
        Self {
            model: model.to_device(&device.clone().autodiff()).valid().train(),
            optim,
            layer_decay,
            smoothing: 0.1,
            depth,
            device: device.clone(),
        }
    }

    /// One AdamW step at peak-relative `lr` on images `[N, 3, S, S]` (normalised) with official
    /// class indices (label-smoothed by [`FinetuneTrainer::smoothing`]); returns the loss before
    /// the step.
    pub fn step(&mut self, images: &[f32], dims: [usize; 4], targets: &[usize], lr: f64) -> f64 {
        let soft = smoothed_targets(targets, self.smoothing);
        self.step_soft(images, dims, &soft, lr)
    }

    /// [`FinetuneTrainer::step`] with soft targets `[N, 2]` (Mixup/CutMix; timm
    /// `SoftTargetCrossEntropy`).
    pub fn step_soft(&mut self, images: &[f32], dims: [usize; 4], soft: &[f32], lr: f64) -> f64 {
        let x = Tensor::<4>::from_data(
            TensorData::new(images.to_vec(), dims),
            &self.device.clone().autodiff(),
        );
        let loss = soft_target_cross_entropy(self.model.forward(x), soft);
        let value = loss.clone().inner().into_scalar::<f32>() as f64;
        if value.is_finite() {
            let mut grads = GradBuffer::new();
            grads.add(&self.model, loss.backward());
            if grads.global_norm().is_finite() {
                let (depth, ld) = (self.depth, self.layer_decay);
                let optim = &mut self.optim;
                update_in_place(&mut self.model, |model| {
                    optim.update_with(model, &grads, lr, |n, s| finetune_group(n, s, depth, ld))
                });
            }
        }
        value
    }

    /// Cross-entropy (no smoothing) and P(fake) on a batch, without gradients.
    pub fn evaluate(&self, images: &[f32], dims: [usize; 4], targets: &[usize]) -> (f64, Vec<f64>) {
        let model = self.model.valid();
        let x = Tensor::<4>::from_data(TensorData::new(images.to_vec(), dims), &self.device);
        crate::adapt::validation_readout(model.forward(x), targets)
    }
}

/// Options of [`finetune`].
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// Data, output, schedule and seed.
    pub common: TransferOptions,
    /// Layer-wise lr decay.
    pub layer_decay: f64,
}

/// One fine-tuning epoch, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneEpoch {
    /// Epoch.
    pub epoch: usize,
    /// Mean training loss (finite batches).
    pub train_loss: f64,
    /// Batches with a non-finite loss (no update).
    pub skipped: usize,
    /// Validation cross-entropy.
    pub val_loss: f64,
    /// Validation accuracy at P(fake) ≥ 0.5.
    pub val_acc: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

fn load_batch(
    set: &[EvalSample],
    idx: &[usize],
    size: usize,
    norm: &MeanStd,
) -> Result<(Vec<f32>, Vec<usize>), TrainError> {
    use rayon::prelude::*;
    let px: Vec<Vec<f32>> = idx
        .par_iter()
        .map(|&i| load_normalized(&set[i].image, size, norm).map_err(TrainError::Data))
        .collect::<Result<_, TrainError>>()?;
    let y = idx.iter().map(|&i| official_class(set[i].label)).collect();
    Ok((px.concat(), y))
}

/// Fine-tunes `model`; writes `checkpoint-min_val_loss.safetensors` (official classifier keys),
/// `pretrain_ds_mean_std.txt`, `log.jsonl` and `checkpoint-last/` (resume). `on_epoch` sees every
/// epoch after its checkpoint is written and may stop the run there (`ControlFlow::Break`).
/// Returns the epochs run by this call and the checkpoint path.
pub fn finetune(
    model: VisionTransformer,
    optim: AdamW,
    opts: &FinetuneOptions,
    mut on_epoch: impl FnMut(&FinetuneEpoch) -> std::ops::ControlFlow<()>,
) -> Result<(Vec<FinetuneEpoch>, PathBuf), TrainError> {
    let (layer_decay, opts) = (opts.layer_decay, &opts.common);
    let settings = opts.settings(serde_json::json!({
        "finetune": { "layer_decay": layer_decay, "drop_path": model.blocks.last().map_or(0.0, |b| b.drop_path()) },
    }));
    let (best, mut log, resumed, _lock) =
        opts.prepare_output(crate::sidecar::ModelKind::Finetune, &settings, &opts.device)?;
    let (model, optim, start, mut best_val) = match resumed {
        Some(r) => (
            opts.restore(model, "model.safetensors")?,
            r.optim,
            r.state.next_epoch,
            r.state.best_val.unwrap_or(f64::INFINITY),
        ),
        None => (model, optim, 0, f64::INFINITY),
    };
    let mut trainer = FinetuneTrainer::new(model, optim, layer_decay, &opts.device);
    let classes: Vec<usize> = opts.train.iter().map(|x| official_class(x.label)).collect();
    let first = epoch_order(&classes, opts.seed, 0, opts.balance);
    let (s, batch) = (opts.img_size, opts.batch_size.min(first.len()).max(1));
    let steps = first.len() / batch;
    let schedule = opts.schedule(batch);
    let mut epochs = Vec::new();
    for epoch in start..opts.epochs {
        let t0 = Instant::now();
        // Drop path draws from the device generator: re-seeded per epoch so a resume replays it.
        opts.device.seed(epoch_seed(opts.seed, epoch));
        let order = epoch_order(&classes, opts.seed, epoch as u64, opts.balance);
        let (mut sum, mut finite) = (0.0, 0usize);
        for step in 0..steps {
            let b = opts.train_batch(&order[step * batch..(step + 1) * batch], epoch, step)?;
            let lr = schedule.at(epoch as f64 + step as f64 / steps as f64);
            let l = trainer.step_soft(&b.images, b.dims, &b.targets, lr);
            StepHook::call(&opts.on_step, step + 1, steps);
            if l.is_finite() {
                sum += l;
                finite += 1;
            }
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let (mut val_sum, mut correct) = (0.0, 0usize);
        let all: Vec<usize> = (0..opts.val.len()).collect();
        for chunk in all.chunks(batch) {
            let (x, y) = load_batch(&opts.val, chunk, s, &opts.mean_std)?;
            let (ce, p) = trainer.evaluate(&x, [y.len(), 3, s, s], &y);
            val_sum += ce * y.len() as f64;
            correct += p
                .iter()
                .zip(&y)
                .filter(|(p, y)| (**p >= 0.5) == (**y == FAKE_CLASS))
                .count();
        }
        let e = FinetuneEpoch {
            epoch,
            train_loss: sum / finite.max(1) as f64,
            skipped: steps - finite,
            val_loss: val_sum / opts.val.len() as f64,
            val_acc: correct as f64 / opts.val.len() as f64,
            images_per_s: (steps * batch) as f64 / train_secs.max(1e-9),
        };
        let weights = |dir: &std::path::Path| save_module(&trainer.model, dir, "model.safetensors");
        let at = (epoch, e.val_loss, &mut best_val);
        opts.end_epoch(
            &trainer.model,
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
    Ok((epochs, best))
}

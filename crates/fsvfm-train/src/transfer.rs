//! What full fine-tuning ([`crate::finetune`]) and FS-Adapter training ([`crate::adapt`]) share:
//! their options, the checks on the data, the schedule, and the output folder (the
//! `checkpoint-min_val_loss.safetensors` selected by validation loss, the mean/std copy, a
//! `log.jsonl`, and `checkpoint-last/` to resume from).
//!
//! **Resume.** After every epoch `checkpoint-last/` is replaced atomically
//! ([`crate::checkpoint::write_dir`]): the trained weights (`model.safetensors` for fine-tuning;
//! for the adapter only its three trained modules, the frozen backbone comes from the encoder
//! checkpoint again), `optimizer.safetensors` and `state.json` (next epoch, best validation
//! loss, the run's settings). Every random draw of an
//! epoch is keyed on `(seed, epoch, step)` (batch order, augmentations) or re-seeded at the epoch
//! start (drop path), so a run killed and resumed with `--resume` ends with the same parameters
//! as an uninterrupted one (`tests/transfer_resume.rs`).

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use fsvfm_data::{EvalSample, MeanStd};
use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::{LoadMode, WeightFile};
use serde::{Deserialize, Serialize};

use crate::optim::AdamW;
use crate::schedule::LrSchedule;
use crate::{TrainError, io_error};

/// A per-step callback `(step done, steps per epoch)`.
#[derive(Clone)]
pub struct StepHook(pub std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>);

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook")
    }
}

impl StepHook {
    /// Reports step `done` of `steps`.
    pub fn call(hook: &Option<StepHook>, done: usize, steps: usize) {
        if let Some(h) = hook {
            (h.0)(done, steps);
        }
    }
}

/// The folder a transfer run resumes from.
pub const LAST: &str = "checkpoint-last";

/// The file of the best (lowest validation loss) weights, what readers load.
pub const BEST: &str = "checkpoint-min_val_loss.safetensors";

/// Where a transfer run stands (`checkpoint-last/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferState {
    /// The first epoch still to run.
    pub next_epoch: usize,
    /// Lowest validation loss so far (`None` before the first epoch).
    pub best_val: Option<f64>,
    /// The settings the run started with; a resume must match them.
    pub settings: serde_json::Value,
}

/// A run being resumed: its state and optimiser (the model is restored by
/// [`TransferOptions::restore`]).
#[derive(Debug)]
pub struct Resumed {
    /// Where the run stands.
    pub state: TransferState,
    /// AdamW state.
    pub optim: AdamW,
}

/// Options of a transfer run.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Training images (label 1 = fake).
    pub train: Vec<EvalSample>,
    /// Validation images (model selection).
    pub val: Vec<EvalSample>,
    /// Output folder.
    pub output: PathBuf,
    /// Input side.
    pub img_size: usize,
    /// The encoder's architecture (written to the sidecar `fsvfm.json`).
    pub model: fsvfm_model::VitConfig,
    /// Normalisation (copied next to the checkpoint).
    pub mean_std: MeanStd,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Base learning rate (`lr = blr · batch / 256`).
    pub blr: f64,
    /// Warmup epochs (then cosine to 1e-6, per iteration).
    pub warmup_epochs: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of the batch order, the augmentation draws and drop path.
    pub seed: u64,
    /// Training augmentation and label smoothing.
    pub augment: crate::batches::Augmentation,
    /// Write `augment_batch.png` (the first training batch, as the model sees it).
    pub augment_picture: bool,
    /// Continue the run in `output` from its `checkpoint-last/`.
    pub resume: bool,
    /// Repeat the smaller class each epoch until real and fake are equally frequent.
    pub balance: bool,
    /// Called after every training step with `(step done, steps per epoch)` (progress bars).
    pub on_step: Option<StepHook>,
    /// Device.
    pub device: Device,
}

impl TransferOptions {
    /// The learning-rate schedule for batches of `batch`.
    pub fn schedule(&self, batch: usize) -> LrSchedule {
        LrSchedule {
            lr: self.blr * batch as f64 / 256.0,
            min_lr: 1e-6,
            warmup_epochs: self.warmup_epochs,
            epochs: self.epochs as f64,
        }
    }

    /// What must not change between a run and its resume: schedule, batch, seed, augmentation,
    /// data sizes, plus the method's own `extra` settings.
    pub fn settings(&self, extra: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "img_size": self.img_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "blr": self.blr,
            "warmup_epochs": self.warmup_epochs,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "augment": self.augment,
            "balance": self.balance,
            "train_images": self.train.len(),
            "val_images": self.val.len(),
            "method": extra,
        })
    }

    /// Checks that both sets hold real and fake images, creates the output folder, writes the
    /// mean/std there, and returns the best-checkpoint path, the opened `log.jsonl` (appended to
    /// on resume) and, with [`TransferOptions::resume`], the run to continue. A folder that holds
    /// a run is refused without `resume`, and a resume whose `settings` differ is refused.
    pub fn prepare_output(
        &self,
        kind: crate::sidecar::ModelKind,
        settings: &serde_json::Value,
        device: &Device,
    ) -> Result<(PathBuf, File, Option<Resumed>, fsvfm_data::outdir::DirLock), TrainError> {
        // One writer per folder, held until the caller drops the lock (the end of its run).
        let lock = fsvfm_data::outdir::lock_dir(&self.output, "fsvfm finetune/adapt")
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let last = self.output.join(LAST);
        let resumed = match (self.resume, last.join("state.json").is_file()) {
            (false, true) => {
                return Err(TrainError::Config(format!(
                    "{} already holds a run; pass --resume to continue it, or choose another output folder",
                    self.output.display()
                )));
            }
            (true, false) => {
                return Err(TrainError::Config(format!(
                    "nothing to resume: no complete {LAST}/ in {}",
                    self.output.display()
                )));
            }
            (true, true) => {
                let state: TransferState = crate::checkpoint::read_state(&last)?;
                if &state.settings != settings {
                    return Err(TrainError::Config(format!(
                        "--resume needs the run's own settings: {} has {}, this command gives {}",
                        last.display(),
                        state.settings,
                        settings
                    )));
                }
                let optim =
                    crate::checkpoint::load_optimizer(&last.join("optimizer.safetensors"), device)?;
                Some(Resumed { state, optim })
            }
            (false, false) => None,
        };
        for (what, set) in [("training", &self.train), ("validation", &self.val)] {
            if !(set.iter().any(|s| s.label == 0) && set.iter().any(|s| s.label == 1)) {
                return Err(TrainError::Data(format!(
                    "the {what} set needs real and fake images ({} images)",
                    set.len()
                )));
            }
        }
        std::fs::create_dir_all(&self.output).map_err(io_error(&self.output))?;
        fsvfm_model::checkpoint::write_atomic(
            &self.output.join("pretrain_ds_mean_std.txt"),
            (self.mean_std.to_json_line() + "\n").as_bytes(),
        )?;
        let command = match kind {
            crate::sidecar::ModelKind::Adapter => "adapt",
            _ => "finetune",
        };
        crate::sidecar::Sidecar::classifier(
            kind,
            BEST,
            &self.model,
            self.mean_std,
            crate::sidecar::ProducedBy {
                command: command.into(),
                settings: settings.clone(),
            },
        )
        .write(&self.output)?;
        let log_path = self.output.join("log.jsonl");
        let log = if let Some(r) = &resumed {
            // Rows of epochs after the checkpoint (logged before a kill) are redone: cut them.
            let next = r.state.next_epoch as u64;
            crate::checkpoint::cut_log(&log_path, |row| {
                row["epoch"].as_u64().is_none_or(|e| e < next)
            })?;
            File::options().append(true).create(true).open(&log_path)
        } else {
            File::create(&log_path)
        }
        .map_err(io_error(&log_path))?;
        Ok((self.output.join(BEST), log, resumed, lock))
    }

    /// The training batch of `idx` at `(epoch, step)` ([`crate::batches::load_train_batch`]);
    /// the very first one is also drawn to `augment_batch.png` when asked.
    pub fn train_batch(
        &self,
        idx: &[usize],
        epoch: usize,
        step: usize,
    ) -> Result<crate::batches::TrainBatch, TrainError> {
        let b = crate::batches::load_train_batch(
            &self.train,
            idx,
            self.img_size,
            &self.mean_std,
            &self.augment,
            self.seed,
            epoch as u64,
            step as u64,
        )?;
        if self.augment_picture && epoch == 0 && step == 0 {
            let p = self.output.join("augment_batch.png");
            crate::viz::batch_picture(&b.images, b.dims, &self.mean_std, &p)?;
        }
        Ok(b)
    }

    /// The end of an epoch: the model becomes the best checkpoint when `val_loss` improves on
    /// `best_val`, the epoch's `row` is logged and `checkpoint-last/` is replaced (`weights`
    /// writes the trained modules).
    #[allow(clippy::too_many_arguments)]
    pub fn end_epoch<M: Module, R: Serialize>(
        &self,
        model: &M,
        weights: impl FnOnce(&Path) -> Result<(), TrainError>,
        optim: &AdamW,
        (epoch, val_loss, best_val): (usize, f64, &mut f64),
        best: &Path,
        settings: &serde_json::Value,
        log: &mut File,
        row: &R,
    ) -> Result<(), TrainError> {
        if val_loss < *best_val {
            *best_val = val_loss;
            save_safetensors(model, best)?;
        }
        let state = TransferState {
            next_epoch: epoch + 1,
            best_val: Some(*best_val),
            settings: settings.clone(),
        };
        // The row before the checkpoint: a kill between them leaves a row the resume cuts,
        // never a checkpoint whose epoch has no row.
        log_line(log, &self.output, row)?;
        self.save_last(weights, optim, &state)
    }

    /// Loads `checkpoint-last/<file>` into `module` (strict).
    pub fn restore<M: Module + ModuleSnapshot>(
        &self,
        module: M,
        file: &str,
    ) -> Result<M, TrainError> {
        let path = self.output.join(LAST).join(file);
        Ok(WeightFile::open(&path)?
            .load_into(module, LoadMode::Strict)?
            .0)
    }

    /// Replaces `checkpoint-last/` after an epoch: `weights` writes the trained modules into the
    /// (temporary) folder it is given (see [`save_module`]), then the optimiser and `state`.
    pub fn save_last(
        &self,
        weights: impl FnOnce(&Path) -> Result<(), TrainError>,
        optim: &AdamW,
        state: &TransferState,
    ) -> Result<(), TrainError> {
        crate::checkpoint::write_dir(&self.output, LAST, |tmp| {
            weights(tmp)?;
            crate::checkpoint::save_optimizer(optim, &tmp.join("optimizer.safetensors"))?;
            crate::checkpoint::write_state(tmp, state)
        })?;
        Ok(())
    }
}

/// Writes `module` as `dir/file` (safetensors, its own parameter names).
pub fn save_module<M: Module>(module: &M, dir: &Path, file: &str) -> Result<(), TrainError> {
    save_safetensors(module, dir.join(file))?;
    Ok(())
}

/// The device seed of `epoch` (drop path) in a run seeded `seed`.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Appends one JSON line to a run log.
pub fn log_line<T: serde::Serialize>(
    log: &mut File,
    path: &Path,
    row: &T,
) -> Result<(), TrainError> {
    use std::io::Write;
    writeln!(log, "{}", serde_json::to_string(row).unwrap_or_default())
        .map_err(io_error(&path.join("log.jsonl")))
}

/// Holds out `fraction` of `samples` as the validation set, per class (so both classes are in
/// it: at least one image of each class that has two or more), a seeded draw: `(train, val)`.
pub fn split_validation(
    samples: Vec<EvalSample>,
    fraction: f64,
    seed: u64,
) -> (Vec<EvalSample>, Vec<EvalSample>) {
    let mut picked = std::collections::HashSet::new();
    for label in [0u8, 1] {
        let of_class: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].label == label)
            .collect();
        let order = crate::data::permutation(of_class.len(), seed ^ 0x5911, label as u64, u64::MAX);
        let mut n_val = ((of_class.len() as f64) * fraction).round() as usize;
        if fraction > 0.0 && of_class.len() >= 2 {
            n_val = n_val.max(1);
        }
        picked.extend(
            order[..n_val.min(of_class.len())]
                .iter()
                .map(|&k| of_class[k]),
        );
    }
    let (val, train): (Vec<_>, Vec<_>) = samples
        .into_iter()
        .enumerate()
        .partition(|(i, _)| picked.contains(i));
    (
        train.into_iter().map(|(_, s)| s).collect(),
        val.into_iter().map(|(_, s)| s).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_split_holds_out_both_classes() {
        let samples: Vec<EvalSample> = (0..16)
            .map(|i| EvalSample {
                image: PathBuf::from(format!("{i}.png")),
                label: (i % 2) as u8,
                video: None,
            })
            .collect();
        for seed in 0..20 {
            let (train, val) = split_validation(samples.clone(), 0.1, seed);
            assert_eq!(train.len() + val.len(), 16);
            assert!(val.iter().any(|s| s.label == 0) && val.iter().any(|s| s.label == 1));
            assert!(train.iter().all(|t| val.iter().all(|v| v.image != t.image)));
        }
        let (a, _) = split_validation(samples.clone(), 0.25, 3);
        let (b, _) = split_validation(samples.clone(), 0.25, 3);
        assert_eq!(
            a.iter().map(|s| &s.image).collect::<Vec<_>>(),
            b.iter().map(|s| &s.image).collect::<Vec<_>>()
        );
        assert_eq!(split_validation(samples, 0.0, 1).1.len(), 0);
    }
}

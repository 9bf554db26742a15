//! What full fine-tuning ([`crate::finetune`]) and FS-Adapter training ([`crate::adapt`]) share:
//! their options, the checks on the data, the schedule, and the output folder (the
//! `checkpoint-min_val_loss.safetensors` selected by validation loss, the mean/std copy and a
//! `log.jsonl`).

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use fsvfm_data::{EvalSample, MeanStd};

use crate::schedule::LrSchedule;
use crate::{TrainError, io_error};

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

    /// Checks that both sets hold real and fake images, creates the output folder, writes the
    /// mean/std there, and returns the best-checkpoint path and the opened `log.jsonl`.
    pub fn prepare_output(&self) -> Result<(PathBuf, File), TrainError> {
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
        let log_path = self.output.join("log.jsonl");
        let log = File::create(&log_path).map_err(io_error(&log_path))?;
        Ok((self.output.join("checkpoint-min_val_loss.safetensors"), log))
    }
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

/// Holds out `fraction` of `samples` (a seeded draw) as the validation set: `(train, val)`.
pub fn split_validation(
    samples: Vec<EvalSample>,
    fraction: f64,
    seed: u64,
) -> (Vec<EvalSample>, Vec<EvalSample>) {
    let order = crate::data::permutation(samples.len(), seed ^ 0x5911, 0, u64::MAX);
    let n_val = ((samples.len() as f64) * fraction).round() as usize;
    let picked: std::collections::HashSet<usize> = order[..n_val].iter().copied().collect();
    let (val, train): (Vec<_>, Vec<_>) = samples
        .into_iter()
        .enumerate()
        .partition(|(i, _)| picked.contains(i));
    (
        train.into_iter().map(|(_, s)| s).collect(),
        val.into_iter().map(|(_, s)| s).collect(),
    )
}

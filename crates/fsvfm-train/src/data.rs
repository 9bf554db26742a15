//! Batches for pre-training: images (bicubic to the model size, `ToTensor`, normalised with the
//! dataset mean/std; no augmentation, so the region maps stay aligned, spec §4), and the masks
//! of the configured strategy for the whole batch (spec §2; one covered region per batch).
//!
//! Data order and masks come from our seeded generator keyed on `(seed, epoch, step)`, so a
//! resumed run sees exactly the batches the uninterrupted run would have.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use fsvfm_data::{MeanStd, PretrainSample, load_normalized};
use fsvfm_masking::{
    LabelMap, MaskKey, MaskParams, Masker, PatchGrid, PatchRegions, Region, rng_for,
};
use rand_chacha::rand_core::RngCore;
use rayon::prelude::*;

use crate::TrainError;
use crate::step::HostBatch;

/// The pre-training dataset, ready to batch.
#[derive(Debug, Clone)]
pub struct PretrainData {
    /// The samples, in their stable order.
    pub samples: Vec<PretrainSample>,
    /// Side of the square model input.
    pub img_size: usize,
    /// The model's patch grid.
    pub grid: PatchGrid,
    /// Normalisation.
    pub norm: MeanStd,
    /// Masking parameters.
    pub mask: MaskParams,
    /// Seed of order and masks.
    pub seed: u64,
}

/// Step index used to key the per-epoch data order (masks use the real step, always smaller).
const ORDER_STEP: u64 = u64::MAX;

impl PretrainData {
    /// Builds the dataset description; `region` forces a covered region.
    pub fn new(
        samples: Vec<PretrainSample>,
        img_size: usize,
        patch_size: usize,
        norm: MeanStd,
        mask: MaskParams,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let grid = PatchGrid::for_image(img_size, patch_size)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(Self {
            samples,
            img_size,
            grid,
            norm,
            mask,
            seed,
        })
    }

    /// Full batches per epoch (the last partial batch is dropped, as the official loader does).
    pub fn iters_per_epoch(&self, batch_size: usize) -> usize {
        self.samples.len() / batch_size.max(1)
    }

    /// The sample order of `epoch`: [`permutation`] of the `(seed, epoch)` generator.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        permutation(self.samples.len(), self.seed, epoch, ORDER_STEP)
    }

    /// Loads and masks the samples `indices` as batch `(epoch, step)`.
    pub fn batch(
        &self,
        indices: &[usize],
        epoch: u64,
        step: u64,
        masker: &mut Masker,
    ) -> Result<HostBatch, TrainError> {
        self.shard(indices, 0, epoch, step, masker)
    }

    /// Loads and masks `indices`, the part of batch `(epoch, step)` that starts at its sample
    /// `first`: the masks are those the samples get in the whole batch (a process of a
    /// multi-process run loads only its part).
    pub fn shard(
        &self,
        indices: &[usize],
        first: usize,
        epoch: u64,
        step: u64,
        masker: &mut Masker,
    ) -> Result<HostBatch, TrainError> {
        let s = self.img_size;
        let loaded: Vec<(Vec<f32>, PatchRegions)> = indices
            .par_iter()
            .map(|&i| {
                let sample = &self.samples[i];
                let img =
                    load_normalized(&sample.image, s, &self.norm).map_err(TrainError::Data)?;
                let map = LabelMap::load(&sample.parsing)
                    .map_err(|e| TrainError::Data(format!("{}: {e}", sample.parsing.display())))?;
                let regions = PatchRegions::from_label_map(&map, self.grid)
                    .map_err(|e| TrainError::Data(format!("{}: {e}", sample.parsing.display())))?;
                Ok((img, regions))
            })
            .collect::<Result<_, TrainError>>()?;
        let n = loaded.len();
        let mut images = Vec::with_capacity(n * 3 * s * s);
        let mut regions = Vec::with_capacity(n);
        for (img, r) in loaded {
            images.extend_from_slice(&img);
            regions.push(r);
        }
        let masks = masker
            .mask_batch(
                &regions,
                &self.mask,
                MaskKey::new(self.seed, epoch, step).with_first_sample(first as u64),
            )
            .map_err(|e| TrainError::Data(e.to_string()))?;
        Ok(HostBatch {
            images,
            dims: [n, 3, s, s],
            mask: masks.mask().to_vec(),
            region: masks.region_mask().to_vec(),
        })
    }
}

/// A Fisher–Yates shuffle of `0..n` drawn from our generator keyed on `(seed, epoch, step)`.
pub fn permutation(n: usize, seed: u64, epoch: u64, step: u64) -> Vec<usize> {
    let mut rng = rng_for(seed, epoch, step);
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // Multiply-shift draw in [0, i]; its bias (< 2^-32 for any realistic i) is irrelevant here.
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        idx.swap(i, j);
    }
    idx
}

/// Parses a region name for [`MaskParams::with_region`].
pub fn parse_region(name: &str) -> Result<Region, TrainError> {
    name.parse::<Region>()
        .map_err(|e| TrainError::Config(e.to_string()))
}

/// One prepared batch from the [`Prefetcher`].
pub struct Prepared {
    /// Epoch.
    pub epoch: u64,
    /// Step within the epoch.
    pub step: u64,
    /// The batch, or why it could not be built.
    pub batch: Result<HostBatch, TrainError>,
}

/// Builds the batches of epochs `start_epoch..end_epoch` on a background thread, two ahead of
/// the training step, so decoding overlaps compute.
pub struct Prefetcher {
    rx: Receiver<Prepared>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts the thread: global batches of `batch_size` samples, of which it loads the part
    /// `part` (all of it, `0..batch_size`, in a single-process run).
    pub fn start(
        data: Arc<PretrainData>,
        batch_size: usize,
        part: std::ops::Range<usize>,
        start_epoch: u64,
        end_epoch: u64,
    ) -> Self {
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::spawn(move || {
            let mut masker = Masker::new();
            let iters = data.iters_per_epoch(batch_size) as u64;
            for epoch in start_epoch..end_epoch {
                let order = data.order(epoch);
                for step in 0..iters {
                    let b = step as usize * batch_size;
                    let idx = &order[b + part.start..b + part.end];
                    let batch = data.shard(idx, part.start, epoch, step, &mut masker);
                    if tx.send(Prepared { epoch, step, batch }).is_err() {
                        return; // the consumer stopped
                    }
                }
            }
        });
        Self {
            rx,
            handle: Some(handle),
        }
    }

    /// The next batch in (epoch, step) order; `None` after the last.
    pub fn next_batch(&mut self) -> Option<Prepared> {
        self.rx.recv().ok()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Unblock the producer by dropping the receiver side first, then join it.
        let (_, dummy) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dummy));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

//! Training batches of the transfer commands: decode, the per-image training transform, then the
//! batch-level Mixup/CutMix and the soft targets (spec §6.0; `fsvfm_data::augment` has the
//! operations and their parity with Pillow/timm/OpenCV).
//!
//! Randomness is keyed on `(seed, epoch, step)`: image `k` of a batch draws from ChaCha stream
//! `k + 1` and the batch-level mix from stream 0 (`fsvfm_masking::rng_for_sample`), so the
//! batches do not depend on thread scheduling and a resumed run sees the same ones.

use fsvfm_data::augment::{Draw, MixDraw, Mixup, TrainAugment};
use fsvfm_data::{EvalSample, MeanStd};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::adapt::official_class;

/// Domain separator of the augmentation streams (apart from masks and batch order).
const AUG_DOMAIN: u64 = 0x6175_676d_656e_7421;

/// The training-time data recipe: per-image transform and batch mixing (whose
/// `label_smoothing` also applies without mixing, as timm's `LabelSmoothingCrossEntropy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augmentation {
    /// Per-image transform.
    pub image: TrainAugment,
    /// Mixup/CutMix and label smoothing.
    pub mixup: Mixup,
}

impl Default for Augmentation {
    /// The official DfD/DiFF recipe (RandomResizedCrop, flip, RandAugment, erasing, Mixup 0.8 /
    /// CutMix 1.0, smoothing 0.1).
    fn default() -> Self {
        Self {
            image: TrainAugment::default(),
            mixup: Mixup::default(),
        }
    }
}

impl Augmentation {
    /// No augmentation, no mixing; label smoothing `smoothing`.
    pub fn none(smoothing: f64) -> Self {
        Self {
            image: TrainAugment::none(),
            mixup: Mixup {
                mixup_alpha: 0.0,
                cutmix_alpha: 0.0,
                prob: 0.0,
                label_smoothing: smoothing,
                ..Mixup::default()
            },
        }
    }

    /// The FAS recipe (colour jitter, flip, resize; no mixing, no smoothing).
    pub fn fas() -> Self {
        Self {
            image: TrainAugment::fas(),
            ..Self::none(0.0)
        }
    }

    /// Whether two passes over the same image can differ (then features cannot be cached).
    pub fn is_random(&self) -> bool {
        self.image.is_random() || self.mixup.enabled()
    }
}

/// One training batch on the host.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// Normalised images `[N, 3, S, S]`, row-major.
    pub images: Vec<f32>,
    /// `[N, 3, S, S]`.
    pub dims: [usize; 4],
    /// Official class indices before mixing (0 = fake, 1 = real): the Real-Anchor loss's labels.
    pub classes: Vec<usize>,
    /// Soft targets `[N, 2]` row-major (smoothed, mixed).
    pub targets: Vec<f32>,
    /// What the mix drew.
    pub mix: MixDraw,
}

/// Decodes `set[idx]`, applies `aug` at model side `size`, mixes; the draws are those of
/// `(seed, epoch, step)`.
#[allow(clippy::too_many_arguments)]
pub fn load_train_batch(
    set: &[EvalSample],
    idx: &[usize],
    size: usize,
    norm: &MeanStd,
    aug: &Augmentation,
    seed: u64,
    epoch: u64,
    step: u64,
) -> Result<TrainBatch, TrainError> {
    use rayon::prelude::*;
    let key = seed ^ AUG_DOMAIN;
    let px: Vec<Vec<f32>> = idx
        .par_iter()
        .enumerate()
        .map(|(k, &i)| {
            let path = &set[i].image;
            let img = fsvfm_data::image_io::decode_rgb(path).map_err(TrainError::Data)?;
            let mut rng = fsvfm_masking::rng_for_sample(key, epoch, step, k as u64);
            Ok(aug
                .image
                .apply(&img, size as u32, norm, &mut Draw::new(&mut rng)))
        })
        .collect::<Result<_, TrainError>>()?;
    let n = idx.len();
    let mut images = px.concat();
    let mut rng = fsvfm_masking::rng_for(key, epoch, step);
    let mix = aug.mixup.draw(size, size, &mut Draw::new(&mut rng));
    Mixup::mix_images(&mix, &mut images, n, size, size);
    let classes: Vec<usize> = idx.iter().map(|&i| official_class(set[i].label)).collect();
    let targets = aug.mixup.targets(&classes, 2, mix.lam);
    Ok(TrainBatch {
        images,
        dims: [n, 3, size, size],
        classes,
        targets,
        mix,
    })
}

/// The training order of `epoch` over samples of official `classes`: a seeded permutation, or
/// with `balance` one in which the smaller class is repeated (cycling through its own shuffled
/// order) until both classes are equally frequent — the role of FSFM's 4× more frames per real
/// video, for sets that are not balanced at extraction.
pub fn epoch_order(classes: &[usize], seed: u64, epoch: u64, balance: bool) -> Vec<usize> {
    let base = crate::data::permutation(classes.len(), seed ^ 0x04de, epoch, u64::MAX);
    if !balance {
        return base;
    }
    let by_class: [Vec<usize>; 2] =
        std::array::from_fn(|c| base.iter().copied().filter(|&i| classes[i] == c).collect());
    let most = by_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut all: Vec<usize> = Vec::with_capacity(2 * most);
    for group in by_class.iter().filter(|g| !g.is_empty()) {
        all.extend((0..most).map(|k| group[k % group.len()]));
    }
    let mix = crate::data::permutation(all.len(), seed ^ 0xba1a, epoch, u64::MAX);
    mix.into_iter().map(|k| all[k]).collect()
}

/// Smoothed one-hot targets `[N, classes]` of hard class indices (no mixing).
pub fn smoothed_targets(classes: &[usize], smoothing: f64) -> Vec<f32> {
    Mixup {
        label_smoothing: smoothing,
        ..Mixup::default()
    }
    .targets(classes, 2, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_order_repeats_the_smaller_class() {
        // 9 fake (class 0) and 3 real (class 1).
        let classes: Vec<usize> = (0..12).map(|i| (i % 4 == 0) as usize).collect();
        let plain = epoch_order(&classes, 1, 0, false);
        let mut sorted = plain.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>(), "a permutation");
        let bal = epoch_order(&classes, 1, 0, true);
        assert_eq!(bal.len(), 18);
        let real: Vec<usize> = bal.iter().copied().filter(|&i| classes[i] == 1).collect();
        assert_eq!(real.len(), 9);
        // Each real image three times, each fake once.
        for i in [0, 4, 8] {
            assert_eq!(real.iter().filter(|&&r| r == i).count(), 3);
        }
        assert_eq!(bal, epoch_order(&classes, 1, 0, true), "seeded");
        assert_ne!(
            bal,
            epoch_order(&classes, 1, 1, true),
            "a new order each epoch"
        );
        // A one-class set is left as it is.
        assert_eq!(epoch_order(&[1, 1, 1], 0, 0, true).len(), 3);
    }
}

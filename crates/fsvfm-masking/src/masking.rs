//! The masking strategies and the batch API (spec §2).
//!
//! CRFR-P follows `collate_fn_crfrp.CRFR_P_masking` /
//! `variable_proportional_masking` of `fsvfm/util/datasets.py@e48bd06`
//! step by step; the other strategies follow the spec's readings (§2.2).
//! Masks are `[N, P]` row-major `u8`, **1 = masked (removed)**, 0 = visible.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::bitset::{count, last_word_mask, push_ones, words_for, write_mask};
use crate::error::{MaskError, Result};
use crate::grid::PatchGrid;
use crate::labels::{LabelMap, lapa};
use crate::regions::{PatchRegions, Region};
use crate::rng::{below, choose_front, rng_for, rng_for_sample, shuffle};
use crate::strategy::{MaskParams, Strategy, masked_count};

/// The random key of one batch: training keys on `(seed, epoch, step)` so runs and
/// resumes replay the same masks; see [`crate::rng`] for what the draws depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct MaskKey {
    /// Run seed.
    pub seed: u64,
    /// Epoch.
    pub epoch: u64,
    /// Step (iteration) within the epoch, or a global step — any stable counter.
    pub step: u64,
    /// Index in the whole batch of the first sample masked here: a data-parallel process that
    /// masks only its shard of a global batch passes the shard's start, so sample `i` of the
    /// shard draws what sample `first_sample + i` of the whole batch draws.
    #[serde(default)]
    pub first_sample: u64,
}

impl MaskKey {
    /// The key `(seed, epoch, step)`.
    pub fn new(seed: u64, epoch: u64, step: u64) -> Self {
        Self {
            seed,
            epoch,
            step,
            first_sample: 0,
        }
    }

    /// The same key for a shard of the batch that starts at sample `first` (see
    /// [`MaskKey::first_sample`]).
    pub fn with_first_sample(self, first: u64) -> Self {
        Self {
            first_sample: first,
            ..self
        }
    }

    /// The key `(seed, 0, 0)`, as used by the CLI's `--seed`.
    pub fn from_seed(seed: u64) -> Self {
        Self::new(seed, 0, 0)
    }
}

/// Masks of one batch: `mask` and `region_mask`, both `[N, P]`, plus the covered region.
///
/// * `mask[i, p] = 1`: patch `p` of sample `i` is masked (the MIM target, `img_mask`).
/// * `region_mask[i, p] = 1`: patch `p` belongs to the fully covered region of sample
///   `i` (and is masked) — the `M_fr` of `L_rec^fr` (spec §3). In the extreme case
///   (the region alone reaches the budget) it equals the sample's `mask` row.
///   All zero for strategies without a covered region, and for samples in which the
///   region is absent.
///
/// `L_rec^fr` divides by `Σ region_mask`; the official code gets NaN when that is 0.
/// Check [`BatchMasks::has_covered_region`] (or [`BatchMasks::covered_patch_count`])
/// before dividing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMasks {
    grid: PatchGrid,
    num_samples: usize,
    strategy: Strategy,
    region: Option<Region>,
    mask: Vec<u8>,
    region_mask: Vec<u8>,
    extreme: Vec<bool>,
}

impl BatchMasks {
    /// An empty result to pass to [`Masker::mask_batch_into`], which resizes it.
    pub fn new() -> Self {
        Self {
            grid: PatchGrid::DEFAULT,
            num_samples: 0,
            strategy: Strategy::CrfrP,
            region: None,
            mask: Vec::new(),
            region_mask: Vec::new(),
            extreme: Vec::new(),
        }
    }

    /// The patch grid.
    pub fn grid(&self) -> PatchGrid {
        self.grid
    }

    /// `N`.
    pub fn num_samples(&self) -> usize {
        self.num_samples
    }

    /// `P`.
    pub fn num_patches(&self) -> usize {
        self.grid.num_patches()
    }

    /// The strategy that produced the masks.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The covered region of the batch (CRFR-R/CRFR-P), `None` for other strategies.
    pub fn region(&self) -> Option<Region> {
        self.region
    }

    /// The image masks, `[N, P]` row-major, 1 = masked.
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }

    /// The fully covered region masks, `[N, P]` row-major, 1 = covered (and masked).
    pub fn region_mask(&self) -> &[u8] {
        &self.region_mask
    }

    /// Row `i` of [`BatchMasks::mask`], `[P]`; `None` if `i >= N`.
    pub fn mask_row(&self, i: usize) -> Option<&[u8]> {
        let p = self.num_patches();
        (i < self.num_samples).then(|| &self.mask[i * p..(i + 1) * p])
    }

    /// Row `i` of [`BatchMasks::region_mask`], `[P]`; `None` if `i >= N`.
    pub fn region_mask_row(&self, i: usize) -> Option<&[u8]> {
        let p = self.num_patches();
        (i < self.num_samples).then(|| &self.region_mask[i * p..(i + 1) * p])
    }

    /// Whether sample `i` took the "extreme" branch: its covered region alone held at
    /// least the masked budget, so a random part of it was unmasked and its region
    /// mask equals its image mask. `false` for `i >= N`.
    pub fn is_extreme(&self, i: usize) -> bool {
        self.extreme.get(i).copied().unwrap_or(false)
    }

    /// Whether any sample has a non-empty region mask, i.e. whether `L_rec^fr` is defined.
    pub fn has_covered_region(&self) -> bool {
        self.region_mask.contains(&1)
    }

    /// `Σ region_mask` over the batch: the denominator of `L_rec^fr`.
    pub fn covered_patch_count(&self) -> usize {
        self.region_mask.iter().map(|&v| usize::from(v)).sum()
    }

    /// Number of samples whose region mask is non-empty.
    pub fn samples_with_region(&self) -> usize {
        let p = self.num_patches().max(1);
        self.region_mask
            .chunks_exact(p)
            .filter(|row| row.contains(&1))
            .count()
    }

    /// Sample `i` as the CLI's JSON record, or `None` if `i >= N`.
    pub fn sample(&self, i: usize) -> Option<SampleMask> {
        Some(SampleMask {
            mask: self.mask_row(i)?.to_vec(),
            region_mask: self.region_mask_row(i)?.to_vec(),
            region: self.region,
        })
    }

    fn reset(&mut self, grid: PatchGrid, n: usize, strategy: Strategy, region: Option<Region>) {
        let len = n * grid.num_patches();
        self.grid = grid;
        self.num_samples = n;
        self.strategy = strategy;
        self.region = region;
        self.mask.clear();
        self.mask.resize(len, 0);
        self.region_mask.clear();
        self.region_mask.resize(len, 0);
        self.extreme.clear();
        self.extreme.resize(n, false);
    }
}

impl Default for BatchMasks {
    fn default() -> Self {
        Self::new()
    }
}

/// One sample's masks in the shape of `fsvfm mask --json`:
/// `{"mask":[P ints],"region_mask":[P ints],"region":"eyes"}` (`region` is `null`
/// for strategies without a covered region).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleMask {
    /// `[P]`, 1 = masked.
    pub mask: Vec<u8>,
    /// `[P]`, 1 = patch of the fully covered region (masked).
    pub region_mask: Vec<u8>,
    /// The covered region, if the strategy covers one.
    pub region: Option<Region>,
}

/// The covered region of a batch: the forced one, or one of [`Region::COVERABLE`]
/// drawn uniformly from [`rng_for`]`(key)` (one region per batch, as the official
/// collate's `random.choice(self.facial_region_group[:-2])`). `None` for strategies
/// that cover no region.
///
/// # Errors
/// [`MaskError::RegionNotApplicable`] if a region is forced for such a strategy.
pub fn batch_region(params: &MaskParams, key: MaskKey) -> Result<Option<Region>> {
    if !params.strategy.covers_region() {
        return match params.region {
            Some(_) => Err(MaskError::RegionNotApplicable(params.strategy)),
            None => Ok(None),
        };
    }
    Ok(Some(params.region.unwrap_or_else(|| {
        let mut rng = rng_for(key.seed, key.epoch, key.step);
        Region::COVERABLE[below(&mut rng, Region::COVERABLE.len() as u32) as usize]
    })))
}

/// Masks a batch with a fresh [`Masker`]; see [`Masker::mask_batch_into`].
///
/// # Errors
/// As [`Masker::mask_batch_into`].
pub fn mask_batch(
    regions: &[PatchRegions],
    params: &MaskParams,
    key: MaskKey,
) -> Result<BatchMasks> {
    Masker::new().mask_batch(regions, params, key)
}

/// Computes patch regions of label maps on `grid`, then masks them as a batch.
///
/// # Errors
/// As [`PatchRegions::from_label_map`] and [`Masker::mask_batch_into`].
pub fn mask_label_maps(
    maps: &[LabelMap],
    grid: PatchGrid,
    params: &MaskParams,
    key: MaskKey,
) -> Result<BatchMasks> {
    let regions = maps
        .iter()
        .map(|m| PatchRegions::from_label_map(m, grid))
        .collect::<Result<Vec<_>>>()?;
    mask_batch(&regions, params, key)
}

/// Masks one sample with key `(seed, 0, 0)` and returns the CLI's JSON record.
///
/// # Errors
/// As [`Masker::mask_batch_into`].
pub fn mask_sample(regions: &PatchRegions, params: &MaskParams, seed: u64) -> Result<SampleMask> {
    let batch = mask_batch(
        std::slice::from_ref(regions),
        params,
        MaskKey::from_seed(seed),
    )?;
    batch.sample(0).ok_or(MaskError::EmptyBatch)
}

/// How the patches left after covering are chosen.
#[derive(Clone, Copy)]
enum Fill {
    /// Uniformly among all not-yet-masked patches (Random, CRFR-R).
    Uniform,
    /// Per region group in proportion, then a fix-up (FRP, CRFR-P).
    Proportional,
}

/// Reusable scratch buffers for masking; keep one per data-loader worker to avoid
/// any allocation per batch ([`Masker::mask_batch_into`]).
#[derive(Debug, Default, Clone)]
pub struct Masker {
    img: Vec<u64>,
    fr: Vec<u64>,
    covered: Vec<u64>,
    cand: Vec<u64>,
    idx: Vec<u32>,
}

impl Masker {
    /// A masker with empty buffers (they grow on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// Masks a batch and returns a new [`BatchMasks`]; see [`Masker::mask_batch_into`].
    ///
    /// # Errors
    /// As [`Masker::mask_batch_into`].
    pub fn mask_batch(
        &mut self,
        regions: &[PatchRegions],
        params: &MaskParams,
        key: MaskKey,
    ) -> Result<BatchMasks> {
        let mut out = BatchMasks::new();
        self.mask_batch_into(regions, params, key, &mut out)?;
        Ok(out)
    }

    /// Masks the `N = regions.len()` samples of one batch into `out` (reusing its buffers).
    ///
    /// Every sample gets exactly `K = `[`masked_count`]`(ratio, P)` masked patches.
    /// The covered region (CRFR-R/CRFR-P) is [`batch_region`]`(params, key)`; sample `i`
    /// draws from [`rng_for_sample`]`(seed, epoch, step, first_sample + i)`.
    ///
    /// # Shapes
    /// `regions`: N samples on one `rows × cols` grid; `out.mask()` and
    /// `out.region_mask()`: `[N, P]`, 1 = masked / covered.
    ///
    /// # Errors
    /// [`MaskError::EmptyBatch`], [`MaskError::GridMismatch`] if samples use different
    /// grids, [`MaskError::InvalidRatio`], [`MaskError::RegionNotApplicable`].
    pub fn mask_batch_into(
        &mut self,
        regions: &[PatchRegions],
        params: &MaskParams,
        key: MaskKey,
        out: &mut BatchMasks,
    ) -> Result<()> {
        let first = regions.first().ok_or(MaskError::EmptyBatch)?;
        let grid = first.grid();
        if let Some((index, other)) = regions.iter().enumerate().find(|(_, r)| r.grid() != grid) {
            return Err(MaskError::GridMismatch {
                index,
                rows: grid.rows(),
                cols: grid.cols(),
                got_rows: other.grid().rows(),
                got_cols: other.grid().cols(),
            });
        }
        let p = grid.num_patches();
        let k = masked_count(params.ratio, p)?;
        let region = batch_region(params, key)?;
        out.reset(grid, regions.len(), params.strategy, region);
        self.resize(words_for(p));

        let rows = out
            .mask
            .chunks_exact_mut(p)
            .zip(out.region_mask.chunks_exact_mut(p));
        for (i, ((reg, (mask_row, region_row)), extreme)) in regions
            .iter()
            .zip(rows)
            .zip(out.extreme.iter_mut())
            .enumerate()
        {
            let mut rng =
                rng_for_sample(key.seed, key.epoch, key.step, key.first_sample + i as u64);
            *extreme = match params.strategy {
                Strategy::Random => self.cover_then_fill(reg, None, Fill::Uniform, k, &mut rng),
                Strategy::Frp => self.cover_then_fill(reg, None, Fill::Proportional, k, &mut rng),
                Strategy::CrfrR => self.cover_then_fill(reg, region, Fill::Uniform, k, &mut rng),
                Strategy::CrfrP => {
                    self.cover_then_fill(reg, region, Fill::Proportional, k, &mut rng)
                }
                Strategy::FaskingI => {
                    self.fasking(reg, k, &mut rng);
                    self.fr.fill(0);
                    false
                }
            };
            write_mask(&self.img, mask_row);
            write_mask(&self.fr, region_row);
        }
        Ok(())
    }

    fn resize(&mut self, n_words: usize) {
        for buf in [
            &mut self.img,
            &mut self.fr,
            &mut self.covered,
            &mut self.cand,
        ] {
            buf.clear();
            buf.resize(n_words, 0);
        }
    }

    /// Covers `cover` (if any), then fills up to `k` masked patches. Leaves the image
    /// mask in `self.img` and the region mask in `self.fr`; returns whether the
    /// extreme branch was taken.
    ///
    /// This is `variable_proportional_masking` for one sample (spec §2.1), with
    /// `T = K` an integer (see [`masked_count`]):
    /// 1. `img = FR`; if `|FR| < K`, fill `n = K − |FR|` more patches:
    ///    * Proportional: `ratio = n / (P − |FR|)` (in f32, like torch); for every other
    ///      group in the official order, `cand = group \ covered`, mask
    ///      `round_half_even(|cand| · ratio)` uniformly random patches of `cand`, then
    ///      `covered ∪= cand` (first group wins); finally fix up to exactly `K`
    ///      by masking random `{img = 0, FR = 0}` or unmasking random
    ///      `{img = 1, FR = 0}` patches — never unmasking the covered region.
    ///    * Uniform: mask `n` uniformly random patches outside `FR`.
    /// 2. Otherwise (extreme): unmask `|FR| − K` random patches of `FR`, and the region
    ///    mask becomes the image mask.
    fn cover_then_fill(
        &mut self,
        reg: &PatchRegions,
        cover: Option<Region>,
        fill: Fill,
        k: usize,
        rng: &mut ChaCha8Rng,
    ) -> bool {
        let p = reg.num_patches();
        let valid_last = last_word_mask(p);
        match cover {
            Some(r) => self.fr.copy_from_slice(reg.region(r).words()),
            None => self.fr.fill(0),
        }
        let f = count(&self.fr);
        self.img.copy_from_slice(&self.fr);

        if f >= k {
            // Extreme branch: the covered region alone reaches the budget.
            let drop = f - k;
            self.idx.clear();
            push_ones(&self.fr, &mut self.idx);
            choose_front(rng, &mut self.idx, drop);
            for &q in &self.idx[..drop] {
                clear_bit(&mut self.img, q);
            }
            self.fr.copy_from_slice(&self.img);
            return f > 0;
        }

        let n = k - f;
        match fill {
            Fill::Uniform => {
                // Candidates: every patch outside FR.
                complement_into(&mut self.cand, &self.fr, valid_last);
                self.mask_random(n, rng);
            }
            Fill::Proportional => {
                // torch: int32 / float32 -> float32, then float32 products.
                let ratio = n as f32 / (p - f) as f32;
                self.covered.copy_from_slice(&self.fr);
                for group in Region::ALL {
                    if Some(group) == cover {
                        continue;
                    }
                    let members = reg.region(group).words();
                    for ((c, &m), &cov) in self.cand.iter_mut().zip(members).zip(&self.covered) {
                        *c = m & !cov;
                    }
                    let c = count(&self.cand);
                    let take = ((c as f32 * ratio).round_ties_even() as usize).min(c);
                    self.mask_random(take, rng);
                    for (cov, &c) in self.covered.iter_mut().zip(&self.cand) {
                        *cov |= c;
                    }
                }
                // Fix-up to exactly K; FR patches are never candidates.
                let m = count(&self.img);
                if m < k {
                    for ((c, &im), &fr) in self.cand.iter_mut().zip(&self.img).zip(&self.fr) {
                        *c = !im & !fr;
                    }
                    if let Some(last) = self.cand.last_mut() {
                        *last &= valid_last;
                    }
                    self.mask_random(k - m, rng);
                } else if m > k {
                    for ((c, &im), &fr) in self.cand.iter_mut().zip(&self.img).zip(&self.fr) {
                        *c = im & !fr;
                    }
                    self.idx.clear();
                    push_ones(&self.cand, &mut self.idx);
                    choose_front(rng, &mut self.idx, m - k);
                    for &q in &self.idx[..m - k] {
                        clear_bit(&mut self.img, q);
                    }
                }
            }
        }
        false
    }

    /// Masks `take` uniformly random patches of `self.cand` in `self.img`.
    fn mask_random(&mut self, take: usize, rng: &mut ChaCha8Rng) {
        if take == 0 {
            return;
        }
        self.idx.clear();
        push_ones(&self.cand, &mut self.idx);
        let take = take.min(self.idx.len());
        choose_front(rng, &mut self.idx, take);
        for &q in &self.idx[..take] {
            set_bit(&mut self.img, q);
        }
    }

    /// Fasking-I (spec §2.2, after MARLIN's `YoutubeFace.gen_mask` and `__getitem__`):
    /// grow a *visible* set label by label in the order background, skin, then a
    /// random permutation of the groups [right brow+eye `[2, 4]`, left brow+eye
    /// `[3, 5]`, nose `[6]`, mouth `[7, 8, 9]`, hair `[10]`], stopping as soon as it
    /// holds at least `P − K` patches (MARLIN checks after every label); then drop
    /// random visible patches down to exactly `P − K`. Facial parts are thus masked
    /// first. Leaves the image mask in `self.img`.
    fn fasking(&mut self, reg: &PatchRegions, k: usize, rng: &mut ChaCha8Rng) {
        const FACIAL: [&[u8]; 5] = [
            &[lapa::RIGHT_EYEBROW, lapa::RIGHT_EYE],
            &[lapa::LEFT_EYEBROW, lapa::LEFT_EYE],
            &[lapa::NOSE],
            &[lapa::UPPER_LIP, lapa::INNER_MOUTH, lapa::LOWER_LIP],
            &[lapa::HAIR],
        ];
        let p = reg.num_patches();
        let valid_last = last_word_mask(p);
        let keep = p - k;
        let mut order = [0usize, 1, 2, 3, 4];
        shuffle(rng, &mut order);

        // `cand` holds the visible set while it grows.
        self.cand.fill(0);
        let queue = [&[lapa::BACKGROUND][..], &[lapa::SKIN][..]]
            .into_iter()
            .chain(order.iter().map(|&g| FACIAL[g]));
        'grow: for labels in queue {
            for &l in labels {
                if let Some(set) = reg.label(l) {
                    for (v, &w) in self.cand.iter_mut().zip(set.words()) {
                        *v |= w;
                    }
                }
                if count(&self.cand) >= keep {
                    break 'grow;
                }
            }
        }
        // Trim (or, defensively, pad) the visible set to exactly P − K. Every patch of
        // a valid PatchRegions carries a label, so the queue always reaches P − K.
        let v = count(&self.cand);
        self.idx.clear();
        if v > keep {
            push_ones(&self.cand, &mut self.idx);
            choose_front(rng, &mut self.idx, v - keep);
            for &q in &self.idx[..v - keep] {
                clear_bit(&mut self.cand, q);
            }
        } else if v < keep {
            complement_into(&mut self.covered, &self.cand, valid_last);
            push_ones(&self.covered, &mut self.idx);
            choose_front(rng, &mut self.idx, keep - v);
            for &q in &self.idx[..keep - v] {
                set_bit(&mut self.cand, q);
            }
        }
        // Masked = not visible.
        complement_into(&mut self.img, &self.cand, valid_last);
    }
}

fn set_bit(words: &mut [u64], q: u32) {
    words[(q / 64) as usize] |= 1 << (q % 64);
}

fn clear_bit(words: &mut [u64], q: u32) {
    words[(q / 64) as usize] &= !(1 << (q % 64));
}

/// `out = !a`, restricted to the `P` valid bits.
fn complement_into(out: &mut [u64], a: &[u64], valid_last: u64) {
    for (o, &w) in out.iter_mut().zip(a) {
        *o = !w;
    }
    if let Some(last) = out.last_mut() {
        *last &= valid_last;
    }
}

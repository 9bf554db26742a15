//! Facial-region masking for FSFM / FS-VFM pre-training.
//!
//! Mirrors `collate_fn_crfrp` of `fsvfm/util/datasets.py@e48bd06` (branch
//! `FSVFM-extension` of `wolo-wolo/FSFM-CVPR25`; byte-identical to
//! `fsfm-3c/util/datasets.py`), i.e. spec `method.md` §2:
//!
//! 1. **Labels → patch regions.** A LaPa label map ([`LabelMap`], ids `0..=10`, from
//!    PNG or `.npy`) becomes per-patch membership ([`PatchRegions`]) on any
//!    [`PatchGrid`] by the official *any-pixel* rule (a patch belongs to a region
//!    if any of its pixels has one of the region's labels), for the 8 groups of
//!    [`Region`] in the official order, with the special face-boundary rule.
//! 2. **Strategies** ([`Strategy`]): `random`, `fasking-i`, `frp`, `crfr-r`, `crfr-p`.
//!    CRFR-P reproduces the official algorithm exactly (one region per batch,
//!    first-group-wins dedup, half-to-even rounding, fix-up that never unmasks the
//!    covered region, the extreme branch). Random is MAE's. Fasking-I, FRP and
//!    CRFR-R are the spec's readings (no FSFM code exists for them).
//! 3. **Determinism**: all draws come from `ChaCha8Rng` keyed on `(seed, epoch, step)`
//!    ([`rng`]), so masks are identical on every platform.
//!
//! Masks are `[N, P]` row-major `u8`, **1 = masked (removed)**, as in MAE and the
//! official code; patch `(r, c)` is index `r * cols + c`.
//!
//! ```
//! use fsvfm_masking::{MaskKey, MaskParams, PatchGrid, PatchRegions, Strategy, SyntheticFace, mask_batch};
//!
//! let map = SyntheticFace::default().render(224, 224)?;
//! let regions = PatchRegions::from_label_map(&map, PatchGrid::DEFAULT)?;
//! let batch = mask_batch(&[regions], &MaskParams::new(Strategy::CrfrP, 0.75), MaskKey::new(0, 3, 17))?;
//! assert_eq!(batch.mask().iter().filter(|&&m| m == 1).count(), 147); // int(0.75 * 196)
//! if batch.has_covered_region() {
//!     // L_rec^fr = Σ M_fr · e / Σ M_fr is defined only then (spec §3).
//! }
//! # Ok::<(), fsvfm_masking::MaskError>(())
//! ```

#![warn(missing_docs)]

mod bitset;
mod error;
mod grid;
mod labels;
mod masking;
mod regions;
#[cfg(feature = "render")]
pub mod render;
pub mod rng;
mod strategy;
mod synthetic;

pub use bitset::PatchSet;
pub use error::{MaskError, Result};
pub use grid::PatchGrid;
pub use labels::{LabelMap, MAX_MAP_PIXELS, lapa};
pub use masking::{
    BatchMasks, MaskKey, Masker, SampleMask, batch_region, mask_batch, mask_label_maps, mask_sample,
};
pub use regions::{PatchRegions, Region};
pub use rng::{rng_for, rng_for_sample};
pub use strategy::{MaskParams, Strategy, masked_count};
pub use synthetic::SyntheticFace;

//! Facial region groups and patch-level region membership (spec §2).
//!
//! Mirrors `collate_fn_crfrp.facial_region_group` and
//! `masking_all_patches_in_random_specific_facial_region` of
//! `fsvfm/util/datasets.py@e48bd06` (identical in `fsfm-3c/util/datasets.py`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bitset::{PatchSet, words_for};
use crate::error::{MaskError, Result};
use crate::grid::PatchGrid;
use crate::labels::{LabelMap, lapa};

/// The 8 facial region groups, in the official order (spec §2 table).
///
/// The order matters twice: CRFR-P draws the covered region from the first six
/// ([`Region::COVERABLE`]), and its proportional step visits the other groups
/// in this order, each patch counted only in the first group that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Eyebrows, labels `[2, 3]`.
    Eyebrows,
    /// Eyes, labels `[4, 5]`.
    Eyes,
    /// Nose, label `[6]`.
    Nose,
    /// Mouth, labels `[7, 8, 9]` (upper lip, inner mouth, lower lip).
    Mouth,
    /// Face boundary: a patch with at least one skin pixel **and** at least one
    /// hair-or-background pixel (official list `[10, 1, 0]` with a special rule).
    Boundary,
    /// Hair, label `[10]`.
    Hair,
    /// Face skin, label `[1]`.
    Skin,
    /// Background, label `[0]`.
    Background,
}

impl Region {
    /// All 8 groups in the official order.
    pub const ALL: [Region; 8] = [
        Region::Eyebrows,
        Region::Eyes,
        Region::Nose,
        Region::Mouth,
        Region::Boundary,
        Region::Hair,
        Region::Skin,
        Region::Background,
    ];

    /// The groups CRFR-P/CRFR-R may cover: `facial_region_group[:-2]` (never skin or background).
    pub const COVERABLE: [Region; 6] = [
        Region::Eyebrows,
        Region::Eyes,
        Region::Nose,
        Region::Mouth,
        Region::Boundary,
        Region::Hair,
    ];

    /// Position in [`Region::ALL`] (0..8).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lower-case name used by the CLI and JSON (`eyebrows`, …, `background`).
    pub fn name(self) -> &'static str {
        match self {
            Region::Eyebrows => "eyebrows",
            Region::Eyes => "eyes",
            Region::Nose => "nose",
            Region::Mouth => "mouth",
            Region::Boundary => "boundary",
            Region::Hair => "hair",
            Region::Skin => "skin",
            Region::Background => "background",
        }
    }

    /// The LaPa ids of the group as listed officially. For [`Region::Boundary`] this
    /// is `[10, 1, 0]`, but membership uses the skin-and-(hair-or-background) rule,
    /// not "any of these labels".
    pub fn labels(self) -> &'static [u8] {
        match self {
            Region::Eyebrows => &[lapa::RIGHT_EYEBROW, lapa::LEFT_EYEBROW],
            Region::Eyes => &[lapa::RIGHT_EYE, lapa::LEFT_EYE],
            Region::Nose => &[lapa::NOSE],
            Region::Mouth => &[lapa::UPPER_LIP, lapa::INNER_MOUTH, lapa::LOWER_LIP],
            Region::Boundary => &[lapa::HAIR, lapa::SKIN, lapa::BACKGROUND],
            Region::Hair => &[lapa::HAIR],
            Region::Skin => &[lapa::SKIN],
            Region::Background => &[lapa::BACKGROUND],
        }
    }

    /// Whether a patch whose label presence bits are `bits` (bit `l` = label `l`
    /// occurs in the patch) belongs to this group, by the any-pixel rule.
    pub fn contains_bits(self, bits: u16) -> bool {
        let has = |l: u8| bits >> l & 1 == 1;
        match self {
            Region::Boundary => has(lapa::SKIN) && (has(lapa::HAIR) || has(lapa::BACKGROUND)),
            _ => self.labels().iter().any(|&l| has(l)),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Region {
    type Err = MaskError;

    /// Parses the names of [`Region::name`] (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Region::ALL
            .into_iter()
            .find(|r| r.name() == lower)
            .ok_or_else(|| MaskError::UnknownRegion(s.to_string()))
    }
}

/// Patch-level region membership of one label map on one grid.
///
/// Built once per sample (the costly part is the pass over pixels) and reused for
/// every mask. Holds, for every patch, which labels occur in it (the any-pixel
/// rule: `max_pool2d(map == label, kernel = patch)`), and from that one
/// [`PatchSet`] per label and per [`Region`] group. A patch may belong to
/// several groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRegions {
    grid: PatchGrid,
    label_bits: Vec<u16>,
    labels: [PatchSet; lapa::NUM_LABELS],
    groups: [PatchSet; 8],
}

/// All 11 label bits.
const VALID_BITS: u16 = (1 << lapa::NUM_LABELS) - 1;

impl PatchRegions {
    /// Computes membership from a label map with the any-pixel rule.
    ///
    /// The map is cut into the grid's cells by [`PatchGrid::cell_bounds`]: when the
    /// map size is a multiple of the grid (224 into 14) each cell is one 16-pixel
    /// patch, exactly as the official max-pool; otherwise cells are ⌊⌋-spaced pixel
    /// ranges, so every pixel belongs to exactly one cell (225 into 14: the last
    /// row/column of cells is 17 pixels wide).
    ///
    /// # Errors
    /// [`MaskError::GridTooFine`] if the map has fewer rows or columns than the grid.
    pub fn from_label_map(map: &LabelMap, grid: PatchGrid) -> Result<Self> {
        grid.check_fits(map.height(), map.width(), "the label map")?;
        let col_bounds: Vec<(usize, usize)> = (0..grid.cols())
            .map(|c| PatchGrid::cell_bounds(map.width(), grid.cols(), c))
            .collect();
        let row_cell = PatchGrid::cell_of_pixel(map.height(), grid.rows());
        let mut bits = vec![0u16; grid.num_patches()];
        for (r, row) in map.labels().chunks_exact(map.width()).enumerate() {
            let cells = &mut bits[row_cell[r] * grid.cols()..][..grid.cols()];
            for (cell, &(x0, x1)) in cells.iter_mut().zip(&col_bounds) {
                // OR of one-hot label bits over the cell's pixels in this row.
                *cell |= row[x0..x1].iter().fold(0u16, |acc, &l| acc | 1 << l);
            }
        }
        Ok(Self::build(grid, bits))
    }

    /// Builds membership from precomputed per-patch label bits: `bits[p]` has bit
    /// `l` set iff label `l` occurs in patch `p` (as returned by
    /// [`PatchRegions::label_bits`]; handy for caching regions next to a dataset).
    ///
    /// # Errors
    /// [`MaskError::PatchCount`] if `bits.len() != grid.num_patches()`;
    /// [`MaskError::InvalidPatchLabels`] if a patch has no label bit (every real
    /// patch holds at least one pixel) or a bit above 10.
    pub fn from_label_bits(grid: PatchGrid, bits: Vec<u16>) -> Result<Self> {
        if bits.len() != grid.num_patches() {
            return Err(MaskError::PatchCount {
                expected: grid.num_patches(),
                got: bits.len(),
            });
        }
        if let Some(p) = bits.iter().position(|&b| b == 0 || b & !VALID_BITS != 0) {
            return Err(MaskError::InvalidPatchLabels {
                patch: p,
                bits: bits[p],
            });
        }
        Ok(Self::build(grid, bits))
    }

    fn build(grid: PatchGrid, label_bits: Vec<u16>) -> Self {
        let p = grid.num_patches();
        let n_words = words_for(p);
        let set_where = |pred: &dyn Fn(u16) -> bool| {
            let mut words = vec![0u64; n_words];
            for (i, &b) in label_bits.iter().enumerate() {
                if pred(b) {
                    words[i / 64] |= 1 << (i % 64);
                }
            }
            PatchSet::from_words(words, p)
        };
        let labels = std::array::from_fn(|l| set_where(&|b| b >> l & 1 == 1));
        let groups = std::array::from_fn(|g| set_where(&|b| Region::ALL[g].contains_bits(b)));
        Self {
            grid,
            label_bits,
            labels,
            groups,
        }
    }

    /// The grid the membership was computed on.
    pub fn grid(&self) -> PatchGrid {
        self.grid
    }

    /// Number of patches `P`.
    pub fn num_patches(&self) -> usize {
        self.grid.num_patches()
    }

    /// Per-patch label presence bits, `[P]` (bit `l` = label `l` occurs in the patch).
    pub fn label_bits(&self) -> &[u16] {
        &self.label_bits
    }

    /// Patches containing at least one pixel of LaPa `label`, or `None` for an id above 10.
    pub fn label(&self, label: u8) -> Option<&PatchSet> {
        self.labels.get(label as usize)
    }

    /// Patches belonging to `region` (any-pixel rule; boundary rule for [`Region::Boundary`]).
    pub fn region(&self, region: Region) -> &PatchSet {
        &self.groups[region.index()]
    }

    /// Patches belonging to `region`, as a `[P]` 0/1 mask (1 = member).
    pub fn region_mask(&self, region: Region) -> Vec<u8> {
        self.region(region).to_mask()
    }
}

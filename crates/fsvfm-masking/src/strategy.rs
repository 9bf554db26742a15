//! Strategy names, parameters and the masked-patch budget.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{MaskError, Result};
use crate::regions::Region;

/// The five masking strategies compared in the FSFM paper (spec §2).
///
/// | strategy | source | covers a region |
/// |---|---|---|
/// | [`Random`](Strategy::Random) | MAE `random_masking` (uniform) | no |
/// | [`FaskingI`](Strategy::FaskingI) | MARLIN `fasking`, per image — **inferred** | no |
/// | [`Frp`](Strategy::Frp) | CRFR-P without the covering step — **inferred** | no |
/// | [`CrfrR`](Strategy::CrfrR) | CRFR-P's covering step, then uniform — **inferred** | yes |
/// | [`CrfrP`](Strategy::CrfrP) | official `collate_fn_crfrp.CRFR_P_masking` | yes |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// `random`: MAE uniform random masking.
    #[serde(rename = "random")]
    Random,
    /// `fasking-i`: MARLIN's face-guided masking for a single image (facial parts first).
    #[serde(rename = "fasking-i")]
    FaskingI,
    /// `frp`: Facial Region Proportional masking.
    #[serde(rename = "frp")]
    Frp,
    /// `crfr-r`: Covering a Random Facial Region, then Random masking.
    #[serde(rename = "crfr-r")]
    CrfrR,
    /// `crfr-p`: Covering a Random Facial Region, then Proportional masking (the FSFM method).
    #[serde(rename = "crfr-p")]
    CrfrP,
}

impl Strategy {
    /// All strategies, in the order of the paper's comparison (and of the CLI's `--all-strategies` panels).
    pub const ALL: [Strategy; 5] = [
        Strategy::Random,
        Strategy::FaskingI,
        Strategy::Frp,
        Strategy::CrfrR,
        Strategy::CrfrP,
    ];

    /// The CLI/JSON name: `random`, `fasking-i`, `frp`, `crfr-r` or `crfr-p`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::FaskingI => "fasking-i",
            Strategy::Frp => "frp",
            Strategy::CrfrR => "crfr-r",
            Strategy::CrfrP => "crfr-p",
        }
    }

    /// Whether the strategy fully covers one facial region (CRFR-R and CRFR-P), and so
    /// produces a region mask and accepts a forced region.
    pub fn covers_region(self) -> bool {
        matches!(self, Strategy::CrfrR | Strategy::CrfrP)
    }

    /// Whether the algorithm is taken from released code (Random from MAE, CRFR-P from
    /// FSFM) rather than inferred from the paper (spec §2.2).
    pub fn is_official(self) -> bool {
        matches!(self, Strategy::Random | Strategy::CrfrP)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Strategy {
    type Err = MaskError;

    /// Parses the names of [`Strategy::name`] (case-insensitive; `_` accepted for `-`).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == norm)
            .ok_or_else(|| MaskError::UnknownStrategy(s.to_string()))
    }
}

/// What to mask: strategy, ratio and an optional forced region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskParams {
    /// The strategy.
    pub strategy: Strategy,
    /// Fraction of patches to mask, in `[0, 1]`; the masked count is [`masked_count`].
    pub ratio: f64,
    /// Force the covered region (CRFR-R/CRFR-P only; any of the 8 groups). `None` draws
    /// one of [`Region::COVERABLE`] per batch, as the official collate does.
    pub region: Option<Region>,
}

impl MaskParams {
    /// `strategy` at `ratio`, region drawn per batch.
    pub fn new(strategy: Strategy, ratio: f64) -> Self {
        Self {
            strategy,
            ratio,
            region: None,
        }
    }

    /// The same parameters with the covered region forced to `region`.
    pub fn with_region(mut self, region: Region) -> Self {
        self.region = Some(region);
        self
    }
}

impl Default for MaskParams {
    /// The pre-training recipe: CRFR-P at `mask_ratio = 0.75` (spec §5).
    fn default() -> Self {
        Self::new(Strategy::CrfrP, 0.75)
    }
}

/// The number of masked patches `K = int(ratio · P)`, the same for every strategy.
///
/// Mirrors the official arithmetic: `self.mask_ratio * self.num_patches` meets a
/// float32 tensor and is truncated with `.int()`, so the product is rounded to
/// `f32` before truncation. For the recipe (0.75 · 196 = 147) this is exact. The
/// visible count is `P − K` (49). Note that the official *encoder* keeps
/// `int(P · (1 − ratio))` tokens (spec §1.1), which equals `P − K` whenever
/// `ratio · P` is an integer; for other ratios it can be one less.
///
/// # Errors
/// [`MaskError::InvalidRatio`] unless `ratio` is finite and in `[0, 1]`.
pub fn masked_count(ratio: f64, num_patches: usize) -> Result<usize> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(MaskError::InvalidRatio(ratio));
    }
    let t = (ratio * num_patches as f64) as f32;
    Ok((t as usize).min(num_patches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
            assert_eq!(s.to_string(), s.name());
            let json = format!("\"{}\"", s.name());
            assert_eq!(serde_json::to_string(&s).unwrap(), json);
        }
        assert_eq!("CRFR_P".parse::<Strategy>().unwrap(), Strategy::CrfrP);
        assert!("crfr".parse::<Strategy>().is_err());
    }

    #[test]
    fn masked_count_truncates_like_the_official_code() {
        assert_eq!(masked_count(0.75, 196).unwrap(), 147);
        assert_eq!(masked_count(0.0, 196).unwrap(), 0);
        assert_eq!(masked_count(1.0, 196).unwrap(), 196);
        // 0.6 * 196 = 117.6 -> 117.
        assert_eq!(masked_count(0.6, 196).unwrap(), 117);
        // 0.29 * 100 = 28.999999999999996 in f64, which f32 rounds to 29.0 (as torch does).
        assert_eq!(masked_count(0.29, 100).unwrap(), 29);
        assert!(masked_count(-0.1, 10).is_err());
        assert!(masked_count(1.5, 10).is_err());
        assert!(masked_count(f64::NAN, 10).is_err());
    }
}

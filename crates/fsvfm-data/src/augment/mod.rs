//! Training augmentations of the official transfer recipes (spec §6.0, §6.3), on 8-bit RGB with
//! Pillow's arithmetic where the official code runs Pillow:
//!
//! - [`TrainAugment`]: timm `create_transform(is_training=True)` as FSFM calls it —
//!   RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3), horizontal flip 0.5, RandAugment
//!   `rand-m9-mstd0.5-inc1`, `ToTensor` + `Normalize`, random erasing (p 0.25, per-pixel normal
//!   values, one box) — or the FAS recipe (flip, saturation jitter, resize).
//! - [`Mixup`]: timm `Mixup` in batch mode (Mixup α 0.8 / CutMix α 1.0, switch 0.5, λ corrected
//!   to the pasted box's area) with label-smoothed soft targets.
//!
//! Interpolation: FSFM passes a torchvision `InterpolationMode` to timm 0.4.5, whose
//! `_pil_interp` only recognises strings and falls back to bilinear, so the crop resize and the
//! RandAugment warps are bilinear ([`Filter::Bilinear`], the default; *\[inferred\]* in the spec,
//! decided here from that code path).
//!
//! Randomness: every draw comes from the `RngCore` the caller passes, so a training run keyed on
//! `(seed, epoch, step, sample)` draws the same augmentations when resumed. The draws follow the
//! official structure (which parameters are random and from which distribution), not Python's
//! random streams.

pub mod pil_ops;
pub mod rand;
pub mod resample;

use std::str::FromStr;

use image::RgbImage;
use serde::{Deserialize, Serialize};

pub use self::rand::Draw;
pub use resample::{Filter, resize};

use crate::MeanStd;

/// timm's `_MAX_LEVEL`.
const MAX_LEVEL: f64 = 10.0;

/// One RandAugment operation (timm names; the `*Increasing` variants are selected by
/// [`RandAugment::increasing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaOp {
    /// `ImageOps.autocontrast`.
    AutoContrast,
    /// `ImageOps.equalize`.
    Equalize,
    /// `ImageOps.invert`.
    Invert,
    /// ± up to 30°.
    Rotate,
    /// Keep 4 − ⌊4·m/10⌋ bits (increasing) or ⌊4·m/10⌋ bits.
    Posterize,
    /// Threshold 256 − ⌊256·m/10⌋ (increasing) or ⌊256·m/10⌋.
    Solarize,
    /// Add ⌊110·m/10⌋ below 128.
    SolarizeAdd,
    /// Saturation factor 1 ± 0.9·m/10 (increasing) or 0.1 + 1.8·m/10.
    Color,
    /// Contrast factor, as `Color`.
    Contrast,
    /// Brightness factor, as `Color`.
    Brightness,
    /// Sharpness factor, as `Color`.
    Sharpness,
    /// Shear factor ± 0.3·m/10.
    ShearX,
    /// Shear factor ± 0.3·m/10.
    ShearY,
    /// Shift ± 0.45·m/10 of the width.
    TranslateXRel,
    /// Shift ± 0.45·m/10 of the height.
    TranslateYRel,
}

impl RaOp {
    /// The 15 operations of timm's `_RAND_TRANSFORMS` / `_RAND_INCREASING_TRANSFORMS`, in order.
    pub const ALL: [RaOp; 15] = [
        RaOp::AutoContrast,
        RaOp::Equalize,
        RaOp::Invert,
        RaOp::Rotate,
        RaOp::Posterize,
        RaOp::Solarize,
        RaOp::SolarizeAdd,
        RaOp::Color,
        RaOp::Contrast,
        RaOp::Brightness,
        RaOp::Sharpness,
        RaOp::ShearX,
        RaOp::ShearY,
        RaOp::TranslateXRel,
        RaOp::TranslateYRel,
    ];

    /// Whether the level's sign is drawn at random (`_randomly_negate`).
    pub fn signed(self, increasing: bool) -> bool {
        match self {
            RaOp::Rotate
            | RaOp::ShearX
            | RaOp::ShearY
            | RaOp::TranslateXRel
            | RaOp::TranslateYRel => true,
            RaOp::Color | RaOp::Contrast | RaOp::Brightness | RaOp::Sharpness => increasing,
            _ => false,
        }
    }

    /// Applies the operation at `magnitude` (0–10) with the level negated when `negate` (only
    /// for [`RaOp::signed`] operations), as timm's `level_fn` + `aug_fn`; `fill` is the colour of
    /// pixels warped in from outside.
    pub fn apply(
        self,
        img: &RgbImage,
        magnitude: f64,
        increasing: bool,
        negate: bool,
        translate_pct: f64,
        fill: [u8; 3],
    ) -> RgbImage {
        let frac = magnitude / MAX_LEVEL;
        let sign = if negate && self.signed(increasing) {
            -1.0
        } else {
            1.0
        };
        let enhance = || {
            if increasing {
                1.0 + sign * frac * 0.9
            } else {
                frac * 1.8 + 0.1
            }
        };
        match self {
            RaOp::AutoContrast => pil_ops::auto_contrast(img),
            RaOp::Equalize => pil_ops::equalize(img),
            RaOp::Invert => pil_ops::invert(img),
            RaOp::Rotate => pil_ops::rotate(img, sign * frac * 30.0, fill),
            RaOp::Posterize => {
                let bits = (frac * 4.0) as u32;
                pil_ops::posterize(img, if increasing { 4 - bits } else { bits })
            }
            RaOp::Solarize => {
                let t = (frac * 256.0) as u32;
                pil_ops::solarize(img, if increasing { 256 - t } else { t })
            }
            RaOp::SolarizeAdd => pil_ops::solarize_add(img, (frac * 110.0) as u32),
            RaOp::Color => pil_ops::color(img, enhance()),
            RaOp::Contrast => pil_ops::contrast(img, enhance()),
            RaOp::Brightness => pil_ops::brightness(img, enhance()),
            RaOp::Sharpness => pil_ops::sharpness(img, enhance()),
            RaOp::ShearX => pil_ops::shear_x(img, sign * frac * 0.3, fill),
            RaOp::ShearY => pil_ops::shear_y(img, sign * frac * 0.3, fill),
            RaOp::TranslateXRel => pil_ops::translate_x_rel(img, sign * frac * translate_pct, fill),
            RaOp::TranslateYRel => pil_ops::translate_y_rel(img, sign * frac * translate_pct, fill),
        }
    }
}

/// timm RandAugment (`rand_augment_transform`): `num_layers` operations drawn with replacement,
/// each applied with probability `prob` at a magnitude drawn from N(`magnitude`,
/// `magnitude_std`) clipped to [0, 10].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RandAugment {
    /// `m`: the magnitude (0–10).
    pub magnitude: f64,
    /// `n`: operations per image.
    pub num_layers: usize,
    /// `mstd`: standard deviation of the magnitude noise.
    pub magnitude_std: f64,
    /// `inc`: the increasing-severity variants.
    pub increasing: bool,
    /// Probability of each drawn operation (timm: 0.5).
    pub prob: f64,
    /// Translation range as a fraction of the side (timm: 0.45).
    pub translate_pct: f64,
}

impl RandAugment {
    /// Draws and applies the operations.
    pub fn apply(&self, img: &RgbImage, d: &mut Draw<'_>, fill: [u8; 3]) -> RgbImage {
        let mut img = img.clone();
        let ops: Vec<RaOp> = (0..self.num_layers)
            .map(|_| RaOp::ALL[d.below(RaOp::ALL.len() as u32) as usize])
            .collect();
        for op in ops {
            if self.prob < 1.0 && d.unit() > self.prob {
                continue;
            }
            let mut m = self.magnitude;
            if self.magnitude_std > 0.0 {
                m += self.magnitude_std * d.normal();
            }
            let m = m.clamp(0.0, MAX_LEVEL);
            let negate = op.signed(self.increasing) && d.chance(0.5);
            img = op.apply(&img, m, self.increasing, negate, self.translate_pct, fill);
        }
        img
    }
}

impl FromStr for RandAugment {
    type Err = String;

    /// Parses timm's config string, e.g. `rand-m9-mstd0.5-inc1` (keys `m`, `n`, `mstd`, `inc`).
    /// As timm 0.4.5, any `inc` value selects the increasing variants (`bool("0")` is true).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split('-');
        if parts.next() != Some("rand") {
            return Err(format!("RandAugment config {s:?} must start with \"rand\""));
        }
        let mut ra = RandAugment {
            magnitude: MAX_LEVEL,
            num_layers: 2,
            magnitude_std: 0.0,
            increasing: false,
            prob: 0.5,
            translate_pct: 0.45,
        };
        for part in parts {
            let split = part
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(part.len());
            let (key, val) = part.split_at(split);
            if val.is_empty() {
                continue;
            }
            let bad = |e: &dyn std::fmt::Display| format!("RandAugment config {s:?}: {part}: {e}");
            match key {
                "m" => ra.magnitude = val.parse::<u32>().map_err(|e| bad(&e))? as f64,
                "n" => ra.num_layers = val.parse().map_err(|e| bad(&e))?,
                "mstd" => ra.magnitude_std = val.parse().map_err(|e| bad(&e))?,
                "inc" => ra.increasing = true,
                other => return Err(bad(&format!("unknown key {other:?}"))),
            }
        }
        Ok(ra)
    }
}

impl TryFrom<String> for RandAugment {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<RandAugment> for String {
    fn from(r: RandAugment) -> String {
        let mut s = format!("rand-m{}-n{}", r.magnitude, r.num_layers);
        if r.magnitude_std > 0.0 {
            s += &format!("-mstd{}", r.magnitude_std);
        }
        if r.increasing {
            s += "-inc1";
        }
        s
    }
}

/// `Option<RandAugment>` as one string, `"none"` for `None`, so a file can switch off the
/// RandAugment of the recipe it starts from.
mod optional_rand_augment {
    use super::RandAugment;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<RandAugment>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(r) => s.serialize_str(&String::from(r.clone())),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RandAugment>, D::Error> {
        let s = String::deserialize(d)?;
        if s == "none" {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(serde::de::Error::custom)
        }
    }
}

/// How the training image reaches the model size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    /// RandomResizedCrop with area fraction in `scale` and aspect ratio in `ratio`.
    RandomResized {
        /// Area fraction range.
        scale: (f64, f64),
        /// Aspect-ratio (w/h) range.
        ratio: (f64, f64),
    },
    /// Plain resize of the whole image (the FAS recipe).
    Resize,
}

/// The per-image training transform; `Default` is the DfD/DiFF recipe of spec §6.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainAugment {
    /// Crop to the model size.
    pub crop: Crop,
    /// Resampling filter of the crop and the warps.
    pub interpolation: Filter,
    /// Horizontal flip probability.
    pub hflip: f64,
    /// RandAugment, if any (timm config string; `"none"` in files).
    #[serde(with = "optional_rand_augment")]
    pub rand_augment: Option<RandAugment>,
    /// FAS colour jitter: with probability `.0` the HSV saturation is scaled by U(`.1`, `.2`),
    /// through OpenCV's float HSV round trip (see [`cv2_saturation`]), before the resize.
    pub saturation: Option<(f64, f64, f64)>,
    /// Random-erasing probability (on the normalised tensor).
    pub re_prob: f64,
    /// Erased boxes per image.
    pub re_count: usize,
}

impl Default for TrainAugment {
    fn default() -> Self {
        Self {
            crop: Crop::RandomResized {
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
            },
            interpolation: Filter::Bilinear,
            hflip: 0.5,
            rand_augment: Some("rand-m9-mstd0.5-inc1".parse().expect("valid config")),
            saturation: None,
            re_prob: 0.25,
            re_count: 1,
        }
    }
}

impl TrainAugment {
    /// No augmentation at all: resize only (what evaluation does).
    pub fn none() -> Self {
        Self {
            crop: Crop::Resize,
            interpolation: Filter::Bicubic,
            hflip: 0.0,
            rand_augment: None,
            saturation: None,
            re_prob: 0.0,
            re_count: 1,
        }
    }

    /// The FAS recipe (spec §6.3, `cross_domain_FAS/utils/dataset.py`): OpenCV HSV round trip
    /// with the saturation ×U(0.8, 1.2) at p 0.5, PIL bicubic resize, horizontal flip.
    pub fn fas() -> Self {
        Self {
            hflip: 0.5,
            saturation: Some((0.5, 0.8, 1.2)),
            ..Self::none()
        }
    }

    /// Whether the transform is random at all.
    pub fn is_random(&self) -> bool {
        matches!(self.crop, Crop::RandomResized { .. })
            || self.hflip > 0.0
            || self.rand_augment.is_some()
            || self.saturation.is_some()
            || self.re_prob > 0.0
    }

    /// The image part (before `ToTensor`): crop/resize to `size`, flip, RandAugment, jitter.
    /// `fill` is RandAugment's fill colour ([`fill_color`] of the normalisation mean).
    pub fn apply_image(
        &self,
        img: &RgbImage,
        size: u32,
        d: &mut Draw<'_>,
        fill: [u8; 3],
    ) -> RgbImage {
        let jittered;
        let img = match self.saturation {
            Some((p, lo, hi)) => {
                let factor = if d.chance(p) {
                    d.uniform(lo, hi) as f32
                } else {
                    1.0
                };
                jittered = cv2_saturation(img, factor);
                &jittered
            }
            None => img,
        };
        let mut img = match self.crop {
            Crop::RandomResized { scale, ratio } => {
                let (i, j, h, w) = rrc_params(img.width(), img.height(), scale, ratio, d);
                resize(
                    &resample::crop(img, j, i, w, h),
                    size,
                    size,
                    self.interpolation,
                )
            }
            Crop::Resize => resize(img, size, size, self.interpolation),
        };
        if self.hflip > 0.0 && d.chance(self.hflip) {
            image::imageops::flip_horizontal_in_place(&mut img);
        }
        if let Some(ra) = &self.rand_augment {
            img = ra.apply(&img, d, fill);
        }
        img
    }

    /// The whole transform: [`TrainAugment::apply_image`], `ToTensor`, normalisation, random
    /// erasing; returns `[3, size, size]`.
    pub fn apply(&self, img: &RgbImage, size: u32, norm: &MeanStd, d: &mut Draw<'_>) -> Vec<f32> {
        let img = self.apply_image(img, size, d, fill_color(norm));
        let mut x = crate::image_io::rgb_to_chw(&img);
        norm.apply(&mut x);
        if self.re_prob > 0.0 {
            random_erasing(
                &mut x,
                size as usize,
                size as usize,
                self.re_prob,
                self.re_count,
                d,
            );
        }
        x
    }
}

/// RandAugment's fill colour: timm's `img_mean = round(255 · mean)` (Python's half-to-even).
pub fn fill_color(norm: &MeanStd) -> [u8; 3] {
    std::array::from_fn(|c| {
        // The official mean is a float64 parsed from text: go through the shortest decimal of
        // our f32 so that e.g. 0.3 gives 255 · 0.3 = 76.4999… → 76, not 76.50000304 → 77.
        let m: f64 = norm.mean[c]
            .to_string()
            .parse()
            .unwrap_or(norm.mean[c] as f64);
        (255.0 * m).round_ties_even().clamp(0.0, 255.0) as u8
    })
}

/// torchvision `RandomResizedCrop.get_params`: `(top, left, height, width)` of a box with area
/// fraction in `scale` and log-uniform aspect ratio in `ratio`; 10 tries, then a centre crop
/// clamped to the ratio range.
pub fn rrc_params(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    d: &mut Draw<'_>,
) -> (u32, u32, u32, u32) {
    let area = (width * height) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * d.uniform(scale.0, scale.1);
        let aspect = d.uniform(lr0, lr1).exp();
        let w = (target * aspect).sqrt().round_ties_even() as i64;
        let h = (target / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let i = d.int_incl(0, height as i64 - h) as u32;
            let j = d.int_incl(0, width as i64 - w) as u32;
            return (i, j, h as u32, w as u32);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (
            width,
            ((width as f64 / ratio.0.min(ratio.1)).round_ties_even() as u32).min(height),
        )
    } else if in_ratio > ratio.0.max(ratio.1) {
        (
            ((height as f64 * ratio.0.max(ratio.1)).round_ties_even() as u32).min(width),
            height,
        )
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// timm `RandomErasing(mode="pixel")` on one normalised `[3, h, w]` image: with probability `p`,
/// `count` boxes of area U(0.02, 1/3)/count and log-uniform aspect in [0.3, 1/0.3] (10 tries each)
/// are filled with standard-normal values per pixel and channel.
pub fn random_erasing(x: &mut [f32], h: usize, w: usize, p: f64, count: usize, d: &mut Draw<'_>) {
    if !d.chance(p) {
        return;
    }
    let area = (h * w) as f64;
    let (lr0, lr1) = (0.3f64.ln(), (1.0f64 / 0.3).ln());
    for _ in 0..count.max(1) {
        for _ in 0..10 {
            let target = d.uniform(0.02, 1.0 / 3.0) * area / count.max(1) as f64;
            let aspect = d.uniform(lr0, lr1).exp();
            let eh = (target * aspect).sqrt().round_ties_even() as usize;
            let ew = (target / aspect).sqrt().round_ties_even() as usize;
            if ew < w && eh < h {
                let top = d.int_incl(0, (h - eh) as i64) as usize;
                let left = d.int_incl(0, (w - ew) as i64) as usize;
                for c in 0..3 {
                    for y in top..top + eh {
                        for v in &mut x[c * h * w + y * w + left..c * h * w + y * w + left + ew] {
                            *v = d.normal() as f32;
                        }
                    }
                }
                break;
            }
        }
    }
}

/// The FAS colour jitter as the official code runs it: RGB → OpenCV float32 HSV (S in [0, 1]),
/// `S *= factor` (no clip), HSV → RGB, NumPy `astype(uint8)` (truncation; negatives wrap, as on
/// x86). The round trip alone (factor 1) already lowers about a quarter of the values by one
/// level, and factors above 1 can wrap saturated channels; both are reproduced for exactness.
pub fn cv2_saturation(img: &RgbImage, factor: f32) -> RgbImage {
    let mut out = img.clone();
    for px in out.pixels_mut() {
        let [h, s, v] = cv2_rgb_to_hsv(px.0.map(|c| c as f32));
        let rgb = cv2_hsv_to_rgb([h, s * factor, v]);
        px.0 = rgb.map(|c| c.trunc() as i32 as u8);
    }
    out
}

/// OpenCV `RGB2HSV_f` (H in degrees, S in [0, 1], V in [0, 255]).
fn cv2_rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let v = r.max(g).max(b);
    let vmin = r.min(g).min(b);
    let diff = v - vmin;
    let s = diff / (v.abs() + f32::EPSILON);
    let k = 60.0f32 / (diff + f32::EPSILON);
    let mut h = if v == r {
        (g - b) * k
    } else if v == g {
        (b - r) * k + 120.0
    } else {
        (r - g) * k + 240.0
    };
    if h < 0.0 {
        h += 360.0;
    }
    [h, s, v]
}

/// OpenCV `HSV2RGB_f` for H in degrees.
fn cv2_hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    if s == 0.0 {
        return [v, v, v];
    }
    const SECTORS: [[usize; 3]; 6] = [
        [1, 3, 0],
        [1, 0, 2],
        [3, 0, 1],
        [0, 2, 1],
        [0, 1, 3],
        [2, 1, 0],
    ];
    let mut h = h * (6.0f32 / 360.0);
    while h < 0.0 {
        h += 6.0;
    }
    while h >= 6.0 {
        h -= 6.0;
    }
    let mut sector = h.floor() as i32;
    h -= sector as f32;
    if !(0..6).contains(&sector) {
        sector = 0;
        h = 0.0;
    }
    let tab = [
        v,
        v * (1.0 - s),
        v * (1.0 - s * h),
        v * (1.0 - s * (1.0 - h)),
    ];
    // OpenCV's table is in (b, g, r) order.
    let [b, g, r] = SECTORS[sector as usize].map(|i| tab[i]);
    [r, g, b]
}

/// timm `Mixup` in batch mode: mixup (λ ~ Beta(α, α)) or CutMix (λ ~ Beta(α_c, α_c), a box of
/// side √(1 − λ) pasted from the flipped batch, λ corrected to its area), label smoothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mixup {
    /// Mixup α (0 = off).
    pub mixup_alpha: f64,
    /// CutMix α (0 = off).
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// Probability of CutMix when both are on.
    pub switch_prob: f64,
    /// Label smoothing of the targets.
    pub label_smoothing: f64,
}

impl Default for Mixup {
    /// The official DfD/DiFF values: 0.8 / 1.0, prob 1, switch 0.5, smoothing 0.1.
    fn default() -> Self {
        Self {
            mixup_alpha: 0.8,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.1,
        }
    }
}

/// What one batch's mix drew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixDraw {
    /// Weight of the original batch (after the CutMix area correction).
    pub lam: f64,
    /// CutMix box `(y0, y1, x0, x1)`, half-open; `None` for mixup (or no mix, λ = 1).
    pub cutmix_box: Option<(usize, usize, usize, usize)>,
}

impl Mixup {
    /// Whether mixing is on at all.
    pub fn enabled(&self) -> bool {
        self.prob > 0.0 && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0)
    }

    /// Draws λ and, for CutMix, the box, for images of `h × w` (`_params_per_batch` +
    /// `cutmix_bbox_and_lam` with `correct_lam`).
    pub fn draw(&self, h: usize, w: usize, d: &mut Draw<'_>) -> MixDraw {
        let none = MixDraw {
            lam: 1.0,
            cutmix_box: None,
        };
        if !self.enabled() || !d.chance(self.prob) {
            return none;
        }
        let cutmix = if self.mixup_alpha > 0.0 && self.cutmix_alpha > 0.0 {
            d.chance(self.switch_prob)
        } else {
            self.cutmix_alpha > 0.0
        };
        let alpha = if cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        };
        let lam = d.beta(alpha, alpha);
        if !cutmix {
            return MixDraw {
                lam,
                cutmix_box: None,
            };
        }
        let ratio = (1.0 - lam).sqrt();
        let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
        let cy = d.below(h as u32) as i64;
        let cx = d.below(w as u32) as i64;
        let b = cutmix_box(h, w, cy, cx, cut_h, cut_w);
        let lam = 1.0 - ((b.1 - b.0) * (b.3 - b.2)) as f64 / (h * w) as f64;
        MixDraw {
            lam,
            cutmix_box: Some(b),
        }
    }

    /// Mixes `batch` (`[N, C, h, w]`, N even) in place with its reverse (`x.flip(0)`).
    pub fn mix_images(m: &MixDraw, batch: &mut [f32], n: usize, h: usize, w: usize) {
        if m.lam == 1.0 && m.cutmix_box.is_none() {
            return;
        }
        let per = batch.len() / n;
        let src = batch.to_vec();
        for i in 0..n {
            let j = n - 1 - i;
            let (dst, other) = (
                &mut batch[i * per..(i + 1) * per],
                &src[j * per..(j + 1) * per],
            );
            match m.cutmix_box {
                Some((y0, y1, x0, x1)) => {
                    for c in 0..per / (h * w) {
                        for y in y0..y1 {
                            let o = c * h * w + y * w;
                            dst[o + x0..o + x1].copy_from_slice(&other[o + x0..o + x1]);
                        }
                    }
                }
                None => {
                    let lam = m.lam as f32;
                    for (a, &b) in dst.iter_mut().zip(other) {
                        *a = *a * lam + b * (1.0 - lam);
                    }
                }
            }
        }
    }

    /// timm `mixup_target`: smoothed one-hot of `labels` mixed with the reversed batch's,
    /// `[N, classes]` row-major.
    pub fn targets(&self, labels: &[usize], classes: usize, lam: f64) -> Vec<f32> {
        let off = self.label_smoothing / classes as f64;
        let on = 1.0 - self.label_smoothing + off;
        let n = labels.len();
        let mut t = vec![0f32; n * classes];
        for i in 0..n {
            for k in 0..classes {
                let y1 = if labels[i] == k { on } else { off };
                let y2 = if labels[n - 1 - i] == k { on } else { off };
                t[i * classes + k] = (y1 * lam + y2 * (1.0 - lam)) as f32;
            }
        }
        t
    }
}

/// timm `rand_bbox` for centre `(cy, cx)` and cut sizes: `(y0, y1, x0, x1)` clipped to the image.
pub fn cutmix_box(
    h: usize,
    w: usize,
    cy: i64,
    cx: i64,
    cut_h: i64,
    cut_w: i64,
) -> (usize, usize, usize, usize) {
    let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    (
        clip(cy - cut_h / 2, h),
        clip(cy + cut_h / 2, h),
        clip(cx - cut_w / 2, w),
        clip(cx + cut_w / 2, w),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    fn face() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        })
    }

    #[test]
    fn config_string_round_trips_and_rejects_nonsense() {
        let ra: RandAugment = "rand-m9-mstd0.5-inc1".parse().unwrap();
        assert_eq!(
            (ra.magnitude, ra.num_layers, ra.magnitude_std, ra.increasing),
            (9.0, 2, 0.5, true)
        );
        let again: RandAugment = String::from(ra.clone()).parse().unwrap();
        assert_eq!(again, ra);
        assert!(
            "rand-m9-x3"
                .parse::<RandAugment>()
                .unwrap_err()
                .contains("unknown key")
        );
        assert!("augmix-m5".parse::<RandAugment>().is_err());
        // timm 0.4.5 reads `inc0` as increasing too (`bool("0")`).
        assert!("rand-m9-inc0".parse::<RandAugment>().unwrap().increasing);
    }

    /// The crop's area fraction and aspect stay inside the requested ranges (up to the integer
    /// rounding of the sides), and the box lies inside the image.
    #[test]
    fn random_resized_crop_respects_its_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut d = Draw::new(&mut rng);
        let (mut small, mut large) = (1.0f64, 0.0f64);
        for _ in 0..2000 {
            let (i, j, h, w) = rrc_params(224, 224, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut d);
            assert!(i + h <= 224 && j + w <= 224 && h > 0 && w > 0);
            let frac = (h * w) as f64 / (224.0 * 224.0);
            let aspect = w as f64 / h as f64;
            assert!((0.075..=1.0).contains(&frac), "{frac}");
            assert!((0.72..=1.39).contains(&aspect), "{aspect}");
            small = small.min(frac);
            large = large.max(frac);
        }
        assert!(small < 0.1 && large > 0.9, "{small} {large}");
        // A 10:1 strip never fits the ratio range: the fallback is a centred crop at ratio 4/3.
        let mut d = Draw::new(&mut rng);
        let (i, j, h, w) = rrc_params(100, 10, (0.99, 1.0), (0.75, 4.0 / 3.0), &mut d);
        assert_eq!((i, h, w), (0, 10, 13));
        assert_eq!(j, (100 - 13) / 2);
    }

    #[test]
    fn erasing_fills_one_box_with_normal_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut d = Draw::new(&mut rng);
        let (h, w) = (40, 50);
        let mut x = vec![7.0f32; 3 * h * w];
        random_erasing(&mut x, h, w, 1.0, 1, &mut d);
        let erased: Vec<usize> = (0..h * w).filter(|&i| x[i] != 7.0).collect();
        let frac = erased.len() as f64 / (h * w) as f64;
        assert!((0.015..0.34).contains(&frac), "{frac}");
        // Every channel is erased over the same box.
        for &i in &erased {
            assert!(x[h * w + i] != 7.0 && x[2 * h * w + i] != 7.0);
        }
        let mut untouched = vec![7.0f32; 3 * h * w];
        random_erasing(&mut untouched, h, w, 0.0, 1, &mut d);
        assert!(untouched.iter().all(|&v| v == 7.0));
    }

    /// Same stream, same output; another stream, another output; and what the transform
    /// promises: model size, normalised values, some draws flipping the image.
    #[test]
    fn train_transform_is_deterministic_per_stream() {
        let aug = TrainAugment::default();
        let norm = MeanStd {
            mean: [0.5; 3],
            std: [0.25; 3],
        };
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            aug.apply(&face(), 32, &norm, &mut Draw::new(&mut rng))
        };
        let (a, b, c) = (run(3), run(3), run(4));
        assert_eq!(a.len(), 3 * 32 * 32);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.is_finite()));
        let none = TrainAugment::none();
        assert!(!none.is_random() && aug.is_random());
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let plain = none.apply(&face(), 32, &norm, &mut Draw::new(&mut rng));
        let direct = {
            let mut x = crate::image_io::rgb_to_chw(&resize(&face(), 32, 32, Filter::Bicubic));
            norm.apply(&mut x);
            x
        };
        assert_eq!(plain, direct);
    }

    #[test]
    fn mixup_draws_are_valid_and_targets_sum_to_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut d = Draw::new(&mut rng);
        let m = Mixup::default();
        let (mut cut, mut mix) = (0, 0);
        for _ in 0..400 {
            let draw = m.draw(16, 12, &mut d);
            assert!((0.0..=1.0).contains(&draw.lam));
            if let Some((y0, y1, x0, x1)) = draw.cutmix_box {
                cut += 1;
                let area = ((y1 - y0) * (x1 - x0)) as f64 / 192.0;
                assert!((draw.lam - (1.0 - area)).abs() < 1e-12);
            } else {
                mix += 1;
            }
            let t = m.targets(&[0, 1, 1], 2, draw.lam);
            for row in t.chunks(2) {
                assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
            }
        }
        assert!(
            cut > 150 && mix > 150,
            "switch 0.5: {cut} cutmix, {mix} mixup"
        );
        let off = Mixup {
            prob: 0.0,
            ..Mixup::default()
        };
        assert_eq!(
            off.draw(4, 4, &mut d),
            MixDraw {
                lam: 1.0,
                cutmix_box: None
            }
        );
    }

    #[test]
    fn fill_colour_rounds_half_to_even_like_python() {
        // 255 · 0.5 = 127.5 → 128 (even); 255 · 0.3 = 76.4999… in float64 → 76.
        let norm = MeanStd {
            mean: [0.5, 0.3, 0.0],
            std: [1.0; 3],
        };
        assert_eq!(fill_color(&norm), [128, 76, 0]);
    }
}

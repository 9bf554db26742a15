//! Forgery synthesis (ARCHITECTURE.md `fsvfm-synth`): fakes made locally from real faces, since
//! no package registry ships deepfake, face-swap or spoofing data (spec offline-assets §1.2).
//!
//! - [`sbi`]: self-blended images (Shiohara & Yamasaki, CVPR 2022);
//! - [`swap`]: landmark face swaps between two identities (Delaunay + piecewise-affine warp,
//!   colour transfer, feathered or Poisson blending);
//! - [`attack`]: print and replay presentation attacks;
//! - [`run`]: `fsvfm synth` over a prepared manifest, with masks and provenance.
//!
//! Images are [`Img`]: float RGB in `[0, 255]`, row-major, interleaved. Masks are `[H, W]` floats
//! in `[0, 1]`, **1 = manipulated** (the blending weight of the fake content). Every random choice
//! comes from a [`Draw`] keyed on `(seed, kind, input, k)`, so outputs are reproducible.

pub mod attack;
pub mod ops;
pub mod run;
pub mod sbi;
pub mod swap;

use image::RgbImage;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;

/// Errors of synthesis.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// An input could not be used (unreadable image, landmarks of the wrong shape).
    #[error("{0}")]
    Input(String),
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl SynthError {
    /// An I/O error tagged with its path.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SynthError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A float RGB image, `[H, W, 3]` interleaved, values in `[0, 255]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Img {
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    /// `h · w · 3` values.
    pub data: Vec<f32>,
}

impl Img {
    /// From an 8-bit image.
    pub fn from_rgb(img: &RgbImage) -> Self {
        Img {
            w: img.width() as usize,
            h: img.height() as usize,
            data: img.as_raw().iter().map(|&v| v as f32).collect(),
        }
    }

    /// To an 8-bit image (rounded, clamped).
    pub fn to_rgb(&self) -> RgbImage {
        let raw = self
            .data
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect();
        RgbImage::from_raw(self.w as u32, self.h as u32, raw).expect("sizes match")
    }

    /// The pixel at `(x, y)`.
    pub fn px(&self, x: usize, y: usize) -> [f32; 3] {
        let i = 3 * (y * self.w + x);
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Bilinear sample at pixel-index coordinates, clamped at the border.
    pub fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let x = x.clamp(0.0, (self.w - 1) as f32);
        let y = y.clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (ax, ay) = (x - x0 as f32, y - y0 as f32);
        let (a, b, c, d) = (
            self.px(x0, y0),
            self.px(x1, y0),
            self.px(x0, y1),
            self.px(x1, y1),
        );
        std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * ax;
            top + ((c[k] + (d[k] - c[k]) * ax) - top) * ay
        })
    }

    /// `mask · fake + (1 − mask) · self`, per pixel.
    pub fn blend(&self, fake: &Img, mask: &[f32]) -> Img {
        let mut out = self.clone();
        for (i, &m) in mask.iter().enumerate() {
            for c in 0..3 {
                let k = 3 * i + c;
                out.data[k] = m * fake.data[k] + (1.0 - m) * self.data[k];
            }
        }
        out
    }
}

/// A mask as an 8-bit grey image (`255 · m`).
pub fn mask_to_gray(mask: &[f32], w: usize, h: usize) -> image::GrayImage {
    let raw = mask
        .iter()
        .map(|m| (m * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    image::GrayImage::from_raw(w as u32, h as u32, raw).expect("sizes match")
}

/// Seeded draws for one synthesised sample (ChaCha8, [`fsvfm_masking::rng_for_sample`] keyed on
/// `(seed, kind, input, k)`).
pub struct Draw(ChaCha8Rng);

impl Draw {
    /// The generator of output `k` of input `input` for `kind` (a small integer per kind).
    pub fn new(seed: u64, kind: u64, input: u64, k: u64) -> Self {
        Draw(fsvfm_masking::rng_for_sample(seed, kind, input, k))
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() as f64 * n as f64) as usize).min(n - 1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

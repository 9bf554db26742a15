//! Pillow's `Image.resize` for 8-bit RGB, bit for bit: separable convolution whose kernel widens
//! with the reduction factor (antialiasing), coefficients in 22-bit fixed point, the horizontal
//! pass first and rounded to `u8` before the vertical one (Pillow `libImaging/Resample.c`).
//!
//! Why our own and not `image::imageops::resize`: the official transforms are PIL's, and the
//! `image` crate keeps the intermediate in `f32` and normalises differently, which moves pixels
//! by up to a few levels (checked against Pillow in `tests/augment_parity.rs`).

use image::RgbImage;

/// Resampling filter (the PIL names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Triangle, support 1 (`Image.BILINEAR`).
    Bilinear,
    /// Keys cubic with a = −0.5, support 2 (`Image.BICUBIC`).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output index: first input index, tap count, and the fixed-point taps.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    taps: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` of Resample.c for the source span `[in0, in1)`.
fn coeffs(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut taps = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero before the clamp.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            *kx = filter.weight((x as f64 + xmin as f64 - center + 0.5) / filterscale);
            ww += *kx;
        }
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            taps[xx * ksize + x] = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        bounds,
        ksize,
        taps,
    }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `img.resize((width, height), filter)`: the whole image resampled to `width × height`.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return img.clone();
    }
    let horiz = coeffs(w as usize, 0.0, w as f64, width as usize, filter);
    let mut vert = coeffs(h as usize, 0.0, h as f64, height as usize, filter);
    let src = img.as_raw();
    let (w, h, width, height) = (w as usize, h as usize, width as usize, height as usize);
    // Only the source rows the vertical pass reads go through the horizontal pass.
    let (first, last) = if width != w {
        let first = vert.bounds[0].0;
        let (lo, n) = vert.bounds[height - 1];
        (first, lo + n)
    } else {
        (0, h)
    };
    let (mut cur, mut cur_w) = (None::<Vec<u8>>, w);
    if width != w {
        let rows = last - first;
        let mut out = vec![0u8; rows * width * 3];
        for y in 0..rows {
            let row = &src[(y + first) * w * 3..(y + first + 1) * w * 3];
            for xx in 0..width {
                let (xmin, n) = horiz.bounds[xx];
                let k = &horiz.taps[xx * horiz.ksize..xx * horiz.ksize + n];
                for c in 0..3 {
                    let mut acc = 1i64 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        acc += row[(xmin + x) * 3 + c] as i64 * kx as i64;
                    }
                    out[(y * width + xx) * 3 + c] = clip8(acc);
                }
            }
        }
        for b in &mut vert.bounds {
            b.0 -= first;
        }
        cur = Some(out);
        cur_w = width;
    }
    let plane = cur.as_deref().unwrap_or(src);
    let out = if height != h {
        let mut out = vec![0u8; height * cur_w * 3];
        for yy in 0..height {
            let (ymin, n) = vert.bounds[yy];
            let k = &vert.taps[yy * vert.ksize..yy * vert.ksize + n];
            for xx in 0..cur_w * 3 {
                let mut acc = 1i64 << (PRECISION_BITS - 1);
                for (y, &ky) in k.iter().enumerate() {
                    acc += plane[(ymin + y) * cur_w * 3 + xx] as i64 * ky as i64;
                }
                out[yy * cur_w * 3 + xx] = clip8(acc);
            }
        }
        out
    } else {
        cur.unwrap_or_else(|| src.to_vec())
    };
    RgbImage::from_raw(width as u32, height as u32, out).expect("buffer sized for the output")
}

/// `img.crop((left, top, left + width, top + height))`, the crop of a torchvision
/// `resized_crop` (integer box inside the image).
pub fn crop(img: &RgbImage, left: u32, top: u32, width: u32, height: u32) -> RgbImage {
    image::imageops::crop_imm(img, left, top, width, height).to_image()
}

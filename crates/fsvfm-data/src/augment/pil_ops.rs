//! The image operations of timm's `auto_augment` (RandAugment), with Pillow's semantics for 8-bit
//! RGB: lookup tables (`ImageOps`), enhancers (`ImageEnhance`: a blend with a degenerate image),
//! and affine warps (`Image.transform(AFFINE)` / `rotate` with bilinear sampling and a fill
//! colour). Checked pixel for pixel against Pillow in `tests/augment_parity.rs`.

use image::RgbImage;

/// Maps every channel value through `lut` (`Image.point` with one table for R, G and B).
fn point(img: &RgbImage, lut: &[u8; 256]) -> RgbImage {
    let mut out = img.clone();
    for v in out.iter_mut() {
        *v = lut[*v as usize];
    }
    out
}

/// Maps channel `c` through `luts[c]`.
fn point3(img: &RgbImage, luts: &[[u8; 256]; 3]) -> RgbImage {
    let mut out = img.clone();
    for px in out.pixels_mut() {
        for c in 0..3 {
            px.0[c] = luts[c][px.0[c] as usize];
        }
    }
    out
}

fn histograms(img: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for px in img.pixels() {
        for c in 0..3 {
            h[c][px.0[c] as usize] += 1;
        }
    }
    h
}

/// `ImageOps.autocontrast(img)` (cutoff 0): each channel stretched from its [min, max] to [0, 255].
pub fn auto_contrast(img: &RgbImage) -> RgbImage {
    let h = histograms(img);
    let luts = std::array::from_fn(|c| {
        let lo = h[c].iter().position(|&n| n > 0).unwrap_or(0);
        let hi = h[c].iter().rposition(|&n| n > 0).unwrap_or(0);
        let mut lut = [0u8; 256];
        for (i, l) in lut.iter_mut().enumerate() {
            *l = if hi <= lo {
                i as u8
            } else {
                let scale = 255.0 / (hi - lo) as f64;
                // Python's int() truncates toward zero.
                (i as f64 * scale - lo as f64 * scale)
                    .trunc()
                    .clamp(0.0, 255.0) as u8
            };
        }
        lut
    });
    point3(img, &luts)
}

/// `ImageOps.equalize(img)`: per-channel histogram equalisation with Pillow's step rule.
pub fn equalize(img: &RgbImage) -> RgbImage {
    let h = histograms(img);
    let luts = std::array::from_fn(|c| {
        let used: Vec<u64> = h[c].iter().copied().filter(|&n| n > 0).collect();
        let mut lut: [u8; 256] = std::array::from_fn(|i| i as u8);
        if used.len() > 1 {
            let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
            if step > 0 {
                let mut n = step / 2;
                for (i, l) in lut.iter_mut().enumerate() {
                    *l = (n / step).min(255) as u8;
                    n += h[c][i];
                }
            }
        }
        lut
    });
    point3(img, &luts)
}

/// `ImageOps.invert`.
pub fn invert(img: &RgbImage) -> RgbImage {
    point(img, &std::array::from_fn(|i| 255 - i as u8))
}

/// `ImageOps.posterize(img, bits)`: keep the top `bits` bits (timm skips it for `bits ≥ 8`).
pub fn posterize(img: &RgbImage, bits: u32) -> RgbImage {
    if bits >= 8 {
        return img.clone();
    }
    let mask = !((1u32 << (8 - bits)) - 1) as u8;
    point(img, &std::array::from_fn(|i| i as u8 & mask))
}

/// `ImageOps.solarize(img, threshold)`: values ≥ `threshold` inverted.
pub fn solarize(img: &RgbImage, threshold: u32) -> RgbImage {
    point(
        img,
        &std::array::from_fn(|i| {
            if (i as u32) < threshold {
                i as u8
            } else {
                255 - i as u8
            }
        }),
    )
}

/// timm `solarize_add(img, add, thresh=128)`: values below 128 raised by `add` (capped at 255).
pub fn solarize_add(img: &RgbImage, add: u32) -> RgbImage {
    point(
        img,
        &std::array::from_fn(|i| {
            if i < 128 {
                (i as u32 + add).min(255) as u8
            } else {
                i as u8
            }
        }),
    )
}

/// Pillow's RGB → L: `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
fn luma(px: [u8; 3]) -> u8 {
    ((px[0] as u32 * 19595 + px[1] as u32 * 38470 + px[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `Image.blend(a, b, alpha)` (`libImaging/Blend.c`): `a + alpha·(b − a)` in single precision,
/// truncated, clipped to [0, 255] when `alpha` extrapolates.
fn blend(a: &RgbImage, b: &RgbImage, alpha: f64) -> RgbImage {
    let alpha = alpha as f32;
    let mut out = a.clone();
    for (o, &v) in out.iter_mut().zip(b.iter()) {
        let t = *o as f32 + alpha * (v as f32 - *o as f32);
        *o = if (0.0..=1.0).contains(&alpha) {
            t as u8
        } else {
            t.clamp(0.0, 255.0) as u8
        };
    }
    out
}

/// `ImageEnhance.Color(img).enhance(factor)`: blend with the grey (L) version.
pub fn color(img: &RgbImage, factor: f64) -> RgbImage {
    let mut grey = img.clone();
    for px in grey.pixels_mut() {
        let l = luma(px.0);
        px.0 = [l, l, l];
    }
    blend(&grey, img, factor)
}

/// `ImageEnhance.Contrast(img).enhance(factor)`: blend with the rounded mean grey level.
pub fn contrast(img: &RgbImage, factor: f64) -> RgbImage {
    let n = (img.width() * img.height()).max(1) as f64;
    let mean = img.pixels().map(|p| luma(p.0) as f64).sum::<f64>() / n;
    let m = (mean + 0.5) as u8;
    let flat = RgbImage::from_pixel(img.width(), img.height(), image::Rgb([m, m, m]));
    blend(&flat, img, factor)
}

/// `ImageEnhance.Brightness(img).enhance(factor)`: blend with black.
pub fn brightness(img: &RgbImage, factor: f64) -> RgbImage {
    blend(&RgbImage::new(img.width(), img.height()), img, factor)
}

/// `ImageEnhance.Sharpness(img).enhance(factor)`: blend with `ImageFilter.SMOOTH` (3×3 kernel
/// `[1 1 1; 1 5 1; 1 1 1] / 13`, border pixels copied).
pub fn sharpness(img: &RgbImage, factor: f64) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut smooth = img.clone();
    if w >= 3 && h >= 3 {
        let src = img.as_raw();
        let dst: &mut [u8] = &mut smooth;
        let k: [f32; 9] = [1.0, 1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0].map(|v| v / 13.0);
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                for c in 0..3 {
                    let mut s = 0.0f32;
                    for dy in 0..3 {
                        let row = (y + dy - 1) * w;
                        let base = (row + x - 1) * 3 + c;
                        s += src[base] as f32 * k[dy * 3]
                            + src[base + 3] as f32 * k[dy * 3 + 1]
                            + src[base + 6] as f32 * k[dy * 3 + 2];
                    }
                    dst[(y * w + x) * 3 + c] = smooth_round(s);
                }
            }
        }
    }
    blend(&smooth, img, factor)
}

/// The 8-bit store of Pillow's 3×3 filter.
fn smooth_round(s: f32) -> u8 {
    if s <= 0.0 {
        0
    } else if s >= 255.0 {
        255
    } else {
        (s + 0.5) as u8
    }
}

/// `img.transform(img.size, AFFINE, m, BILINEAR, fillcolor=fill)`: output pixel `(x, y)` samples
/// the input at `(m0·x' + m1·y' + m2, m3·x' + m4·y' + m5)` with `x' = x + 0.5`, `y' = y + 0.5`.
pub fn affine(img: &RgbImage, m: [f64; 6], fill: [u8; 3]) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let mut out = RgbImage::from_pixel(w as u32, h as u32, image::Rgb(fill));
    let dst: &mut [u8] = &mut out;
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
            let xin = m[0] * xo + m[1] * yo + m[2];
            let yin = m[3] * xo + m[4] * yo + m[5];
            if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (x0, y0) = (xs.floor(), ys.floor());
            let (dx, dy) = (xs - x0, ys - y0);
            let clampx = |v: f64| v.clamp(0.0, (w - 1) as f64) as usize;
            let (xa, xb) = (clampx(x0), clampx(x0 + 1.0));
            let ya = (y0 as i64).clamp(0, h as i64 - 1) as usize;
            let yb_in = y0 + 1.0 >= 0.0 && ((y0 + 1.0) as i64) < h as i64;
            for c in 0..3 {
                let at = |yy: usize, xx: usize| src[(yy * w + xx) * 3 + c] as f64;
                let v1 = at(ya, xa) + (at(ya, xb) - at(ya, xa)) * dx;
                let v2 = if yb_in {
                    let yb = (y0 + 1.0) as usize;
                    at(yb, xa) + (at(yb, xb) - at(yb, xa)) * dx
                } else {
                    v1
                };
                let v = v1 + (v2 - v1) * dy;
                dst[(y * w + x) * 3 + c] = bilinear_store(v);
            }
        }
    }
    out
}

/// The 8-bit store of Pillow's bilinear filter: a plain C cast (truncation).
fn bilinear_store(v: f64) -> u8 {
    v.clamp(0.0, 255.0) as u8
}

/// `img.rotate(degrees, BILINEAR, fillcolor=fill)` about the image centre, same size
/// (counter-clockwise for positive angles, as PIL).
pub fn rotate(img: &RgbImage, degrees: f64, fill: [u8; 3]) -> RgbImage {
    let angle = degrees.rem_euclid(360.0);
    if angle == 0.0 {
        return img.clone();
    }
    let (cx, cy) = (img.width() as f64 / 2.0, img.height() as f64 / 2.0);
    let a = -angle.to_radians();
    // Python rounds the matrix entries to 15 decimals.
    let r = |v: f64| (v * 1e15).round() / 1e15;
    let (c, s) = (r(a.cos()), r(a.sin()));
    let mut m = [c, s, 0.0, -s, c, 0.0];
    m[2] = m[0] * -cx + m[1] * -cy + cx;
    m[5] = m[3] * -cx + m[4] * -cy + cy;
    affine(img, m, fill)
}

/// timm `shear_x(img, factor)`: `AFFINE (1, factor, 0, 0, 1, 0)`.
pub fn shear_x(img: &RgbImage, factor: f64, fill: [u8; 3]) -> RgbImage {
    affine(img, [1.0, factor, 0.0, 0.0, 1.0, 0.0], fill)
}

/// timm `shear_y(img, factor)`: `AFFINE (1, 0, 0, factor, 1, 0)`.
pub fn shear_y(img: &RgbImage, factor: f64, fill: [u8; 3]) -> RgbImage {
    affine(img, [1.0, 0.0, 0.0, factor, 1.0, 0.0], fill)
}

/// timm `translate_x_rel(img, pct)`: shift by `pct · width` pixels.
pub fn translate_x_rel(img: &RgbImage, pct: f64, fill: [u8; 3]) -> RgbImage {
    let px = pct * img.width() as f64;
    affine(img, [1.0, 0.0, px, 0.0, 1.0, 0.0], fill)
}

/// timm `translate_y_rel(img, pct)`: shift by `pct · height` pixels.
pub fn translate_y_rel(img: &RgbImage, pct: f64, fill: [u8; 3]) -> RgbImage {
    let px = pct * img.height() as f64;
    affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, px], fill)
}

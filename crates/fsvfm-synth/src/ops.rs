//! Image and mask operations shared by the generators.

use crate::Img;
pub use fsvfm_faces::regions::morph;
use fsvfm_faces::regions::{convex_hull, fill_polygon};

/// A normalised 1-D Gaussian kernel of standard deviation `sigma` (radius `ceil(3σ)`).
fn kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as i64;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian blur of `channels`-interleaved planes `[h, w, channels]`, border clamped.
pub fn gaussian_blur(data: &[f32], w: usize, h: usize, channels: usize, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return data.to_vec();
    }
    let k = kernel(sigma);
    let rows = blur_pass(data, w, h, channels, &k, true);
    blur_pass(&rows, w, h, channels, &k, false)
}

/// One 1-D pass of [`gaussian_blur`], along rows (`horizontal`) or columns.
fn blur_pass(
    data: &[f32],
    w: usize,
    h: usize,
    channels: usize,
    k: &[f32],
    horizontal: bool,
) -> Vec<f32> {
    let r = (k.len() / 2) as i64;
    let mut out = vec![0.0f32; data.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..channels {
                let mut acc = 0.0;
                for (j, &kv) in k.iter().enumerate() {
                    let off = j as i64 - r;
                    let (xx, yy) = if horizontal {
                        ((x as i64 + off).clamp(0, w as i64 - 1) as usize, y)
                    } else {
                        (x, (y as i64 + off).clamp(0, h as i64 - 1) as usize)
                    };
                    acc += kv * data[(yy * w + xx) * channels + c];
                }
                out[(y * w + x) * channels + c] = acc;
            }
        }
    }
    out
}

/// Gaussian blur of an image.
pub fn blur_img(img: &Img, sigma: f32) -> Img {
    Img {
        w: img.w,
        h: img.h,
        data: gaussian_blur(&img.data, img.w, img.h, 3, sigma),
    }
}

/// A `w × h` binary mask (0/1) of a polygon (even-odd, pixel centres). Square images only use
/// `w == h`; other sizes are filled on the larger square and cropped.
pub fn polygon_mask(poly: &[(f32, f32)], w: usize, h: usize) -> Vec<f32> {
    let side = w.max(h);
    let mut labels = vec![0u8; side * side];
    fill_polygon(&mut labels, side, poly, 1);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        out.extend(labels[y * side..y * side + w].iter().map(|&v| v as f32));
    }
    out
}

/// The binary mask of the convex hull of `points`.
pub fn hull_mask(points: &[(f32, f32)], w: usize, h: usize) -> Vec<f32> {
    polygon_mask(&convex_hull(points), w, h)
}

/// Mean and standard deviation per channel of `img` where `mask > 0.5`.
pub fn masked_stats(img: &Img, mask: &[f32]) -> Option<([f32; 3], [f32; 3])> {
    let (mut n, mut s, mut q) = (0usize, [0f64; 3], [0f64; 3]);
    for (i, &m) in mask.iter().enumerate() {
        if m > 0.5 {
            n += 1;
            for c in 0..3 {
                let v = img.data[3 * i + c] as f64;
                s[c] += v;
                q[c] += v * v;
            }
        }
    }
    if n < 2 {
        return None;
    }
    let mean = s.map(|v| v / n as f64);
    let sd: [f32; 3] =
        std::array::from_fn(|c| ((q[c] / n as f64 - mean[c] * mean[c]).max(0.0)).sqrt() as f32);
    Some((mean.map(|v| v as f32), sd))
}

/// RGB → HSV (h in `[0, 1)`, s and v in `[0, 1]`) and back, for hue/saturation jitter.
pub fn rgb_to_hsv(p: [f32; 3]) -> [f32; 3] {
    let [r, g, b] = p.map(|v| v / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    let s = if max <= 0.0 { 0.0 } else { d / max };
    [h, s, max]
}

/// HSV → RGB in `[0, 255]`.
pub fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_constants_and_spreads_an_impulse() {
        let flat = vec![7.0f32; 25];
        assert!(
            gaussian_blur(&flat, 5, 5, 1, 1.0)
                .iter()
                .all(|v| (v - 7.0).abs() < 1e-5)
        );
        let mut imp = vec![0.0f32; 49];
        imp[24] = 1.0;
        let b = gaussian_blur(&imp, 7, 7, 1, 1.0);
        assert!((b.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(b[24] < 1.0 && b[23] > 0.0 && (b[23] - b[25]).abs() < 1e-6);
    }

    #[test]
    fn hsv_round_trips() {
        for p in [
            [255.0, 0.0, 0.0],
            [12.0, 200.0, 99.0],
            [50.0, 50.0, 50.0],
            [0.0, 10.0, 250.0],
        ] {
            let q = hsv_to_rgb(rgb_to_hsv(p));
            for c in 0..3 {
                assert!((p[c] - q[c]).abs() < 1e-3, "{p:?} {q:?}");
            }
        }
    }

    #[test]
    fn morph_grows_and_shrinks_a_square() {
        let (w, h) = (9, 9);
        let mut m = vec![0.0f32; 81];
        for y in 3..6 {
            for x in 3..6 {
                m[y * w + x] = 1.0;
            }
        }
        assert_eq!(morph(&m, w, h, 1, true).iter().sum::<f32>(), 25.0);
        assert_eq!(morph(&m, w, h, 1, false).iter().sum::<f32>(), 1.0);
    }
}

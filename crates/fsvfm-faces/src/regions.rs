//! LaPa-style region maps (11 labels, spec §2 / `fsvfm_masking::lapa`) rasterised from
//! FaceMesh landmark polygons, in place of the FaRL parser of the official pre-processing, which
//! no package registry ships (spec offline-assets §2.1, §3.2 step 4).
//!
//! Polygons (MediaPipe `face_mesh_connections.py` index loops), drawn in this order, later ones
//! overwriting earlier: skin = face oval; nose = convex hull of the nose points; brows; eyes;
//! upper lip; lower lip; inner mouth. MediaPipe's "left" is the subject's left, LaPa's `l*`.
//!
//! **Hair is a heuristic** (no packaged hair or person segmentation model runs in Rust): inside
//! a head ellipse around the face oval (centre at 40% of the oval's height, semi-axes 0.68 × its
//! width and 0.78 × its height), outside the oval and above the mouth, a pixel is hair unless
//! its colour is close to the backdrop's, or it is skin-coloured; a 5×5 opening then removes the thin
//! rims that anti-aliased edges leave, and pieces under 0.3% of the crop are dropped.
//! The background colour is the mean of the crop's top corners outside the ellipse; the skin
//! colour the mean and spread of the pixels labelled skin. The map therefore gets hair right for
//! the usual portrait (hair darker or differently coloured than a plain backdrop) and leaves
//! ambiguous pixels as background. This affects only the `hair` and face-boundary groups of
//! CRFR-P; it is the main fidelity gap against FaRL (documented in README).

use fsvfm_masking::{LabelMap, lapa};
use image::RgbImage;

/// Face oval, as a closed loop.
pub const FACE_OVAL: [usize; 36] = [
    10, 109, 67, 103, 54, 21, 162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377,
    400, 378, 379, 365, 397, 288, 361, 323, 454, 356, 389, 251, 284, 332, 297, 338,
];
/// Nose points (filled as their convex hull).
pub const NOSE: [usize; 24] = [
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327,
    344, 440,
];
/// Subject's left eyebrow (image right).
pub const LEFT_BROW: [usize; 10] = [276, 283, 282, 295, 285, 336, 296, 334, 293, 300];
/// Subject's right eyebrow (image left).
pub const RIGHT_BROW: [usize; 10] = [46, 53, 52, 65, 55, 107, 66, 105, 63, 70];
/// Subject's left eye.
pub const LEFT_EYE: [usize; 16] = [
    249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 263,
];
/// Subject's right eye.
pub const RIGHT_EYE: [usize; 16] = [
    7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163,
];
/// Upper lip: outer contour left to right, then inner contour right to left.
pub const UPPER_LIP: [usize; 22] = [
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
    78,
];
/// Lower lip: outer contour left to right, then inner contour right to left.
pub const LOWER_LIP: [usize; 22] = [
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 308, 324, 318, 402, 317, 14, 87, 178, 88,
    95, 78,
];
/// Inner mouth (between the inner lip contours).
pub const INNER_MOUTH: [usize; 20] = [
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95,
];

/// Fills a polygon (even-odd rule) into `labels` (`size × size`, row-major) with `label`, testing
/// pixel centres.
pub fn fill_polygon(labels: &mut [u8], size: usize, poly: &[(f32, f32)], label: u8) {
    if poly.len() < 3 {
        return;
    }
    let mut xs = Vec::with_capacity(poly.len());
    for row in 0..size {
        let y = row as f32 + 0.5;
        xs.clear();
        for i in 0..poly.len() {
            let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
            if (a.1 <= y) != (b.1 <= y) {
                xs.push(a.0 + (y - a.1) / (b.1 - a.1) * (b.0 - a.0));
            }
        }
        xs.sort_by(f32::total_cmp);
        for pair in xs.chunks_exact(2) {
            // Pixels whose centre x + 0.5 lies in [pair[0], pair[1]).
            let start = ((pair[0] - 0.5).ceil().max(0.0) as usize).min(size);
            let end = ((pair[1] - 0.5).ceil().max(0.0) as usize).min(size);
            if start < end {
                labels[row * size + start..row * size + end].fill(label);
            }
        }
    }
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no repeated end point.
pub fn convex_hull(points: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f32, f32)> = Vec::with_capacity(2 * p.len());
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f32, f32)>> = if pass == 0 {
            Box::new(p.iter())
        } else {
            Box::new(p.iter().rev())
        };
        for &q in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0
            {
                hull.pop();
            }
            hull.push(q);
        }
        hull.pop();
    }
    hull
}

/// The region map of a `size × size` face crop from its 468 landmarks in crop pixels, with hair
/// from the heuristic of the module docs when `crop` is given (else no hair label).
pub fn region_map(landmarks: &[(f32, f32)], crop: Option<&RgbImage>, size: usize) -> LabelMap {
    let mut labels = vec![lapa::BACKGROUND; size * size];
    let pts = |idx: &[usize]| idx.iter().map(|&i| landmarks[i]).collect::<Vec<_>>();
    let oval = pts(&FACE_OVAL);
    fill_polygon(&mut labels, size, &oval, lapa::SKIN);
    fill_polygon(&mut labels, size, &convex_hull(&pts(&NOSE)), lapa::NOSE);
    fill_polygon(&mut labels, size, &pts(&RIGHT_BROW), lapa::RIGHT_EYEBROW);
    fill_polygon(&mut labels, size, &pts(&LEFT_BROW), lapa::LEFT_EYEBROW);
    fill_polygon(&mut labels, size, &pts(&RIGHT_EYE), lapa::RIGHT_EYE);
    fill_polygon(&mut labels, size, &pts(&LEFT_EYE), lapa::LEFT_EYE);
    fill_polygon(&mut labels, size, &pts(&UPPER_LIP), lapa::UPPER_LIP);
    fill_polygon(&mut labels, size, &pts(&LOWER_LIP), lapa::LOWER_LIP);
    fill_polygon(&mut labels, size, &pts(&INNER_MOUTH), lapa::INNER_MOUTH);
    if let Some(img) = crop
        && img.width() as usize == size
        && img.height() as usize == size
    {
        // Mouth level: the hair search stops there (below it, side pixels are mostly neck,
        // collar or background).
        let mouth_y = landmarks[13].1.max(landmarks[14].1);
        add_hair(&mut labels, size, img, &oval, mouth_y);
    }
    LabelMap::new(size, size, labels).expect("labels are valid LaPa ids")
}

fn add_hair(labels: &mut [u8], size: usize, img: &RgbImage, oval: &[(f32, f32)], mouth_y: f32) {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for &(x, y) in oval {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let (w, h) = (x1 - x0, y1 - y0);
    if w <= 1.0 || h <= 1.0 {
        return;
    }
    let (ecx, ecy) = ((x0 + x1) * 0.5, y0 + 0.4 * h);
    let (ax, ay) = (0.68 * w, 0.78 * h);
    let in_ellipse = |x: f32, y: f32| {
        let (dx, dy) = ((x - ecx) / ax, (y - ecy) / ay);
        dx * dx + dy * dy <= 1.0
    };
    let px = |i: usize| {
        let p = img.as_raw();
        [p[3 * i] as f32, p[3 * i + 1] as f32, p[3 * i + 2] as f32]
    };
    // Skin colour model from the pixels labelled skin.
    let mut skin = Stats::default();
    for (i, &l) in labels.iter().enumerate() {
        if l == lapa::SKIN {
            skin.add(px(i));
        }
    }
    // Background colour from the top corners (top 20% of rows) outside the ellipse.
    let mut bg = Stats::default();
    for row in 0..(size / 5).max(1) {
        for col in 0..size {
            let (x, y) = (col as f32 + 0.5, row as f32 + 0.5);
            if !in_ellipse(x, y) {
                bg.add(px(row * size + col));
            }
        }
    }
    if skin.n < 16 {
        return;
    }
    let (skin_mean, skin_sd) = (skin.mean(), skin.sd().max(8.0));
    // A textured or graded backdrop gets a wider tolerance.
    let bg_model = (bg.n >= 16).then(|| (bg.mean(), (2.5 * bg.sd()).max(40.0)));
    // Hair candidates: the ellipse minus the face, above the mouth.
    let mut hair = vec![false; size * size];
    for row in 0..size {
        let y = row as f32 + 0.5;
        if y > mouth_y {
            break;
        }
        for col in 0..size {
            let i = row * size + col;
            if labels[i] != lapa::BACKGROUND || !in_ellipse(col as f32 + 0.5, y) {
                continue;
            }
            let p = px(i);
            let d_skin = dist(p, skin_mean) / skin_sd;
            if d_skin < 2.0 {
                continue;
            }
            if let Some((b, tol)) = bg_model {
                let d_bg = dist(p, b);
                // Near the backdrop colour, and nearer to it than to the skin.
                if d_bg < tol && d_bg < dist(p, skin_mean) {
                    continue;
                }
            }
            hair[i] = true;
        }
    }
    // Morphological opening (5×5) removes the thin rims that anti-aliased face/backdrop edges
    // leave, then connected pieces smaller than 0.3% of the crop are dropped.
    let r = 2;
    let hair = morph(&morph(&hair, size, size, r, false), size, size, r, true);
    let min_piece = size * size * 3 / 1000;
    for piece in components(&hair, size) {
        if piece.len() >= min_piece {
            for i in piece {
                if labels[i] == lapa::BACKGROUND {
                    labels[i] = lapa::HAIR;
                }
            }
        }
    }
}

/// Square-window minimum (`grow = false`: erosion) or maximum (`grow = true`: dilation) of a
/// `w × h` mask, radius `r` (window `2r + 1`, clipped at the borders), as two 1-D passes. Works on
/// `bool` masks (and/or) and on float masks alike; `fsvfm-synth` uses it for its blending masks.
pub fn morph<T: Copy + PartialOrd>(mask: &[T], w: usize, h: usize, r: usize, grow: bool) -> Vec<T> {
    if r == 0 {
        return mask.to_vec();
    }
    let pick = |a: T, b: T| if (b > a) == grow { b } else { a };
    let mut tmp = mask.to_vec();
    for y in 0..h {
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
            tmp[y * w + x] = (x0..=x1)
                .map(|xx| mask[y * w + xx])
                .fold(mask[y * w + x], pick);
        }
    }
    let mut out = tmp.clone();
    for y in 0..h {
        for x in 0..w {
            let (y0, y1) = (y.saturating_sub(r), (y + r).min(h - 1));
            out[y * w + x] = (y0..=y1)
                .map(|yy| tmp[yy * w + x])
                .fold(tmp[y * w + x], pick);
        }
    }
    out
}

/// 4-connected components of a mask, as lists of pixel indices.
fn components(mask: &[bool], size: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        let mut piece = vec![start];
        let mut k = 0;
        while k < piece.len() {
            let i = piece[k];
            k += 1;
            let (row, col) = (i / size, i % size);
            let mut visit = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    piece.push(j);
                }
            };
            if row > 0 {
                visit(i - size);
            }
            if row + 1 < size {
                visit(i + size);
            }
            if col > 0 {
                visit(i - 1);
            }
            if col + 1 < size {
                visit(i + 1);
            }
        }
        out.push(piece);
    }
    out
}

#[derive(Default)]
struct Stats {
    n: usize,
    sum: [f64; 3],
    sq: [f64; 3],
}

impl Stats {
    fn add(&mut self, p: [f32; 3]) {
        self.n += 1;
        for (c, &v) in p.iter().enumerate() {
            self.sum[c] += v as f64;
            self.sq[c] += (v as f64).powi(2);
        }
    }

    fn mean(&self) -> [f32; 3] {
        std::array::from_fn(|c| (self.sum[c] / self.n as f64) as f32)
    }

    /// Root of the mean per-channel variance.
    fn sd(&self) -> f32 {
        let m = self.mean();
        let var: f64 = (0..3)
            .map(|c| self.sq[c] / self.n as f64 - (m[c] as f64).powi(2))
            .sum::<f64>()
            / 3.0;
        var.max(0.0).sqrt() as f32
    }
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_polygon_fills_exactly_the_pixel_centres_inside() {
        let mut l = vec![0u8; 10 * 10];
        // Square from (2, 3) to (6, 8): columns 2..6, rows 3..8.
        fill_polygon(
            &mut l,
            10,
            &[(2.0, 3.0), (6.0, 3.0), (6.0, 8.0), (2.0, 8.0)],
            7,
        );
        for r in 0..10 {
            for c in 0..10 {
                let inside = (2..6).contains(&c) && (3..8).contains(&r);
                assert_eq!(l[r * 10 + c] == 7, inside, "pixel ({r}, {c})");
            }
        }
        // A triangle has about half the area of its bounding square.
        let mut t = vec![0u8; 100 * 100];
        fill_polygon(&mut t, 100, &[(0.0, 0.0), (100.0, 0.0), (0.0, 100.0)], 1);
        let n = t.iter().filter(|&&v| v == 1).count();
        assert!((4900..=5100).contains(&n), "{n}");
    }

    #[test]
    fn opening_removes_thin_rims_and_components_are_4_connected() {
        let size = 12;
        let mut m = vec![false; size * size];
        // A 6x6 block and a 1-pixel-wide line.
        for r in 1..7 {
            for c in 1..7 {
                m[r * size + c] = true;
            }
        }
        for c in 0..size {
            m[10 * size + c] = true;
        }
        let opened = morph(&morph(&m, size, size, 2, false), size, size, 2, true);
        assert!(opened[3 * size + 3] && !opened[10 * size + 5]);
        assert_eq!(opened.iter().filter(|&&v| v).count(), 36);
        let parts = components(&m, size);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 36);
    }

    #[test]
    fn convex_hull_drops_interior_points() {
        let h = convex_hull(&[(0.0, 0.0), (2.0, 0.0), (1.0, 1.0), (2.0, 2.0), (0.0, 2.0)]);
        assert_eq!(h.len(), 4);
        assert!(!h.contains(&(1.0, 1.0)));
    }
}

//! Landmark face swaps between two identities, the classic FaceSwap pipeline: Delaunay
//! triangulation of the target's FaceMesh points, piecewise-affine warp of the donor onto the
//! target (each target triangle samples the donor's corresponding triangle), colour transfer
//! (Reinhard: per-channel mean and standard deviation matched inside the region), then feathered
//! or seamless (Poisson) blending inside a region drawn at random: the whole face, eyes + nose +
//! mouth (FaceSwap-like), or the mouth only (Face2Face-like expression edits).

use serde_json::json;

use crate::ops::{gaussian_blur, hull_mask, masked_stats, morph, polygon_mask};
use crate::{Draw, Img};
use fsvfm_faces::regions::{
    FACE_OVAL, INNER_MOUTH, LEFT_BROW, LEFT_EYE, LOWER_LIP, NOSE, RIGHT_BROW, RIGHT_EYE, UPPER_LIP,
};

/// Delaunay triangulation (Bowyer–Watson) of `points`: triangles as index triples (any
/// orientation).
pub fn delaunay(points: &[(f32, f32)]) -> Vec<[usize; 3]> {
    let n = points.len();
    if n < 3 {
        return Vec::new();
    }
    let mut pts: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x as f64, y as f64)).collect();
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for &(x, y) in &pts {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let span = (x1 - x0).max(y1 - y0).max(1.0) * 20.0;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    // A super-triangle containing every point.
    pts.push((cx - span, cy - span));
    pts.push((cx + span, cy - span));
    pts.push((cx, cy + span));
    let circum = |t: [usize; 3], pts: &[(f64, f64)]| {
        let (a, b, c) = (pts[t[0]], pts[t[1]], pts[t[2]]);
        let d = 2.0 * (a.0 * (b.1 - c.1) + b.0 * (c.1 - a.1) + c.0 * (a.1 - b.1));
        let sq = |p: (f64, f64)| p.0 * p.0 + p.1 * p.1;
        let ux = (sq(a) * (b.1 - c.1) + sq(b) * (c.1 - a.1) + sq(c) * (a.1 - b.1)) / d;
        let uy = (sq(a) * (c.0 - b.0) + sq(b) * (a.0 - c.0) + sq(c) * (b.0 - a.0)) / d;
        (ux, uy, (a.0 - ux).powi(2) + (a.1 - uy).powi(2))
    };
    let mut tris: Vec<([usize; 3], (f64, f64, f64))> = vec![([n, n + 1, n + 2], (0.0, 0.0, 0.0))];
    tris[0].1 = circum(tris[0].0, &pts);
    for i in 0..n {
        let p = pts[i];
        let (bad, good): (Vec<_>, Vec<_>) = tris.into_iter().partition(|(_, (ux, uy, r2))| {
            (p.0 - ux).powi(2) + (p.1 - uy).powi(2) < *r2 * (1.0 + 1e-12)
        });
        tris = good;
        // The boundary of the cavity: edges of bad triangles not shared by two of them.
        let mut edges: Vec<(usize, usize)> = Vec::new();
        for (t, _) in &bad {
            for e in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                let key = (e.0.min(e.1), e.0.max(e.1));
                if let Some(pos) = edges.iter().position(|&f| f == key) {
                    edges.swap_remove(pos);
                } else {
                    edges.push(key);
                }
            }
        }
        for (a, b) in edges {
            let t = [a, b, i];
            let c = circum(t, &pts);
            if c.2.is_finite() {
                tris.push((t, c));
            }
        }
    }
    tris.into_iter()
        .map(|(t, _)| t)
        .filter(|t| t.iter().all(|&v| v < n))
        .collect()
}

/// Barycentric coordinates of `p` in triangle `(a, b, c)`, or `None` when degenerate.
fn barycentric(p: (f32, f32), a: (f32, f32), b: (f32, f32), c: (f32, f32)) -> Option<[f32; 3]> {
    let det = (b.1 - c.1) * (a.0 - c.0) + (c.0 - b.0) * (a.1 - c.1);
    if det.abs() < 1e-9 {
        return None;
    }
    let l1 = ((b.1 - c.1) * (p.0 - c.0) + (c.0 - b.0) * (p.1 - c.1)) / det;
    let l2 = ((c.1 - a.1) * (p.0 - c.0) + (a.0 - c.0) * (p.1 - c.1)) / det;
    Some([l1, l2, 1.0 - l1 - l2])
}

/// The piecewise-affine map from target to donor over `tris`: for every target pixel centre
/// inside a triangle, the donor position (same barycentric coordinates in the donor's triangle).
/// `[h · w]` entries, `None` outside the triangulation.
pub fn warp_map(
    tris: &[[usize; 3]],
    target: &[(f32, f32)],
    donor: &[(f32, f32)],
    w: usize,
    h: usize,
) -> Vec<Option<(f32, f32)>> {
    let mut map = vec![None; w * h];
    for t in tris {
        let (a, b, c) = (target[t[0]], target[t[1]], target[t[2]]);
        let xs = [a.0, b.0, c.0];
        let ys = [a.1, b.1, c.1];
        let bx0 = xs.iter().fold(f32::MAX, |m, &v| m.min(v)).floor().max(0.0) as usize;
        let by0 = ys.iter().fold(f32::MAX, |m, &v| m.min(v)).floor().max(0.0) as usize;
        let bx1 = (xs.iter().fold(f32::MIN, |m, &v| m.max(v)).ceil().max(0.0) as usize).min(w);
        let by1 = (ys.iter().fold(f32::MIN, |m, &v| m.max(v)).ceil().max(0.0) as usize).min(h);
        for y in by0..by1 {
            for x in bx0..bx1 {
                let p = (x as f32 + 0.5, y as f32 + 0.5);
                let Some(l) = barycentric(p, a, b, c) else {
                    continue;
                };
                if l.iter().all(|&v| v >= -1e-5) {
                    let (da, db, dc) = (donor[t[0]], donor[t[1]], donor[t[2]]);
                    map[y * w + x] = Some((
                        l[0] * da.0 + l[1] * db.0 + l[2] * dc.0,
                        l[0] * da.1 + l[1] * db.1 + l[2] * dc.1,
                    ));
                }
            }
        }
    }
    map
}

/// Which part of the face is swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The face oval.
    Face,
    /// Eyes, brows, nose and mouth (the hull of those parts).
    Inner,
    /// The mouth only, slightly enlarged.
    Mouth,
}

impl Region {
    /// Its name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Region::Face => "face",
            Region::Inner => "eyes_nose_mouth",
            Region::Mouth => "mouth",
        }
    }
}

/// The binary region mask on the target (`[h, w]`).
pub fn region_mask(region: Region, target: &[(f32, f32)], w: usize, h: usize) -> Vec<f32> {
    let pts = |idx: &[usize]| idx.iter().map(|&i| target[i]).collect::<Vec<_>>();
    match region {
        Region::Face => polygon_mask(&pts(&FACE_OVAL), w, h),
        Region::Inner => {
            let idx: Vec<usize> = [
                &LEFT_BROW[..],
                &RIGHT_BROW,
                &LEFT_EYE,
                &RIGHT_EYE,
                &NOSE,
                &UPPER_LIP,
                &LOWER_LIP,
            ]
            .concat();
            hull_mask(&pts(&idx), w, h)
        }
        Region::Mouth => {
            let mut p = pts(&[&UPPER_LIP[..], &LOWER_LIP, &INNER_MOUTH].concat());
            let (cx, cy) = p.iter().fold((0.0, 0.0), |(a, b), q| (a + q.0, b + q.1));
            let (cx, cy) = (cx / p.len() as f32, cy / p.len() as f32);
            for q in &mut p {
                *q = (cx + 1.4 * (q.0 - cx), cy + 1.7 * (q.1 - cy));
            }
            hull_mask(&p, w, h)
        }
    }
}

/// Seamless cloning (Pérez et al. 2003): inside `mask > 0.5`, the solution of `Δf = Δsrc` with
/// `f = dst` on the boundary, by successive over-relaxation; outside, `dst` unchanged.
pub fn poisson_blend(dst: &Img, src: &Img, mask: &[f32], iterations: usize) -> Img {
    let (w, h) = (dst.w, dst.h);
    let inside: Vec<bool> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            mask[i] > 0.5 && x > 0 && y > 0 && x + 1 < w && y + 1 < h
        })
        .collect();
    let mut f = dst.clone();
    // Start from the source (fast convergence: only a smooth correction is solved for).
    let interior: Vec<usize> = (0..w * h).filter(|&i| inside[i]).collect();
    for &i in &interior {
        f.data[3 * i..3 * i + 3].copy_from_slice(&src.data[3 * i..3 * i + 3]);
    }
    let omega = 1.9f32;
    let nb = |i: usize| [i - 1, i + 1, i - w, i + w];
    for _ in 0..iterations {
        for &i in &interior {
            for c in 0..3 {
                let mut sum = 0.0;
                let mut lap = 0.0;
                for j in nb(i) {
                    sum += f.data[3 * j + c];
                    lap += src.data[3 * i + c] - src.data[3 * j + c];
                }
                let new = (sum + lap) / 4.0;
                let k = 3 * i + c;
                f.data[k] += omega * (new - f.data[k]);
            }
        }
    }
    for v in &mut f.data {
        *v = v.clamp(0.0, 255.0);
    }
    f
}

/// One swap: the fake, its mask (1 = donor content) and the drawn parameters.
pub struct Swapped {
    /// The fake.
    pub image: Img,
    /// Where the donor's content went (the blending weight).
    pub mask: Vec<f32>,
    /// The drawn parameters.
    pub params: serde_json::Value,
}

/// Swaps the donor's face (`donor`, its landmarks `dl`) onto `target` (landmarks `tl`), both in
/// their own pixels and of the same size.
pub fn face_swap(
    target: &Img,
    tl: &[(f32, f32)],
    donor: &Img,
    dl: &[(f32, f32)],
    d: &mut Draw,
) -> Swapped {
    let (w, h) = (target.w, target.h);
    let region = [Region::Face, Region::Inner, Region::Mouth][d.below(3)];
    let tris = delaunay(tl);
    let map = warp_map(&tris, tl, dl, w, h);
    let mut warped = target.clone();
    for (i, m) in map.iter().enumerate() {
        if let Some((x, y)) = m {
            let p = donor.sample(x - 0.5, y - 0.5);
            warped.data[3 * i..3 * i + 3].copy_from_slice(&p);
        }
    }
    // The region, restricted to where the warp is defined.
    let mut mask = region_mask(region, tl, w, h);
    for (m, w) in mask.iter_mut().zip(&map) {
        if w.is_none() {
            *m = 0.0;
        }
    }
    let mask = morph(&mask, w, h, 1, false);
    // Colour transfer inside the region.
    if let (Some((mw, sw)), Some((mt, st))) =
        (masked_stats(&warped, &mask), masked_stats(target, &mask))
    {
        for (i, &m) in mask.iter().enumerate() {
            if m > 0.5 {
                for c in 0..3 {
                    let k = 3 * i + c;
                    warped.data[k] = ((warped.data[k] - mw[c]) * (st[c] / sw[c].max(1.0)) + mt[c])
                        .clamp(0.0, 255.0);
                }
            }
        }
    }
    let seamless = d.chance(0.5);
    let (image, out_mask, extra) = if seamless {
        let img = poisson_blend(target, &warped, &mask, 150);
        (img, mask, json!({}))
    } else {
        // Feather width in proportion to the region's size, inside the region only, so nothing
        // outside it changes.
        let area = mask.iter().filter(|&&m| m > 0.5).count() as f32;
        let sigma = d.uniform(0.04, 0.12) * area.sqrt();
        let eroded = morph(&mask, w, h, sigma.ceil() as usize, false);
        let feather: Vec<f32> = gaussian_blur(&eroded, w, h, 1, sigma)
            .iter()
            .zip(&mask)
            .map(|(f, m)| f * m)
            .collect();
        (
            target.blend(&warped, &feather),
            feather,
            json!({"feather_sigma": sigma}),
        )
    };
    Swapped {
        image,
        mask: out_mask,
        params: json!({
            "region": region.name(), "blend": if seamless { "poisson" } else { "feather" },
            "triangles": tris.len(), "blend_params": extra,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delaunay_of_a_square_grid_covers_it_with_2_triangles_per_cell() {
        let mut pts = Vec::new();
        for y in 0..4 {
            for x in 0..4 {
                // A small jitter avoids co-circular ties.
                pts.push((
                    x as f32 * 10.0 + 0.01 * (x * y) as f32,
                    y as f32 * 10.0 + 0.013 * x as f32,
                ));
            }
        }
        let t = delaunay(&pts);
        assert_eq!(t.len(), 18);
        // The triangles tile the convex hull without overlap: their areas add up to its area.
        let hull = fsvfm_faces::regions::convex_hull(&pts);
        let hull_area = (0..hull.len())
            .map(|i| {
                let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum::<f32>()
            .abs()
            / 2.0;
        let area: f32 = t
            .iter()
            .map(|t| {
                let (a, b, c) = (pts[t[0]], pts[t[1]], pts[t[2]]);
                ((b.0 - a.0) * (c.1 - a.1) - (c.0 - a.0) * (b.1 - a.1)).abs() / 2.0
            })
            .sum();
        assert!((area - hull_area).abs() < 1e-2, "{area} vs {hull_area}");
    }

    #[test]
    fn the_warp_is_affine_inside_each_triangle() {
        let target = [(10.0, 10.0), (50.0, 10.0), (10.0, 50.0)];
        // Donor = target scaled by 2 and shifted.
        let donor: Vec<(f32, f32)> = target
            .iter()
            .map(|p| (2.0 * p.0 + 3.0, 2.0 * p.1 - 1.0))
            .collect();
        let map = warp_map(&[[0, 1, 2]], &target, &donor, 64, 64);
        let (x, y) = (20usize, 15usize);
        let (dx, dy) = map[y * 64 + x].unwrap();
        assert!((dx - (2.0 * 20.5 + 3.0)).abs() < 1e-3 && (dy - (2.0 * 15.5 - 1.0)).abs() < 1e-3);
        assert!(map[60 * 64 + 60].is_none());
    }

    #[test]
    fn poisson_blend_keeps_the_outside_and_matches_the_boundary() {
        let (w, h) = (20, 20);
        let dst = Img {
            w,
            h,
            data: vec![100.0; w * h * 3],
        };
        let src = Img {
            w,
            h,
            data: vec![30.0; w * h * 3],
        };
        let mut mask = vec![0.0; w * h];
        for y in 5..15 {
            for x in 5..15 {
                mask[y * w + x] = 1.0;
            }
        }
        let out = poisson_blend(&dst, &src, &mask, 400);
        // A flat source has no gradient: the result inside is the boundary value.
        assert!(
            (out.px(10, 10)[0] - 100.0).abs() < 0.5,
            "{:?}",
            out.px(10, 10)
        );
        assert_eq!(out.px(2, 2), [100.0; 3]);
    }
}

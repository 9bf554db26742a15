//! Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images",
//! CVPR 2022): one face is both source and target. A copy is jittered in colour, frequency and
//! geometry, then blended back inside a deformed, blurred landmark-hull mask. The artefacts
//! (blending boundary, colour and sharpness mismatch, slight misalignment) are the ones face swaps
//! leave, without a second identity.
//!
//! Following the paper's recipe: colour = RGB shift, hue/saturation/value and
//! brightness/contrast; frequency = a blur (down/up-sampling) or a sharpen; geometry = scale
//! 0.95–1.05 and translation ±3%; mask = convex hull of the face landmarks (the whole face with
//! the forehead, or from the brows down), its vertices jittered, eroded or dilated, Gaussian
//! blurred, and scaled by a blend ratio from {0.25, 0.5, 0.75, 1, 1, 1}.

use serde_json::json;

use crate::ops::{blur_img, gaussian_blur, hsv_to_rgb, hull_mask, morph, rgb_to_hsv};
use crate::{Draw, Img};
use fsvfm_faces::regions::{FACE_OVAL, LEFT_BROW, RIGHT_BROW};

/// One self-blended image: the fake, its mask (`[h, w]`, 1 = blended source) and the parameters
/// drawn (JSON, for the manifest).
pub struct Blended {
    /// The fake.
    pub image: Img,
    /// The blending mask.
    pub mask: Vec<f32>,
    /// The drawn parameters.
    pub params: serde_json::Value,
}

/// The source transform: colour, frequency and geometric jitter of a copy of `img`.
fn jitter_source(img: &Img, d: &mut Draw) -> (Img, serde_json::Value) {
    let (w, h) = (img.w, img.h);
    let shift = [
        d.uniform(-20.0, 20.0),
        d.uniform(-20.0, 20.0),
        d.uniform(-20.0, 20.0),
    ];
    let (dh, ds, dv) = (
        d.uniform(-0.03, 0.03),
        d.uniform(0.8, 1.2),
        d.uniform(0.9, 1.1),
    );
    let (bright, contrast) = (d.uniform(-0.1, 0.1), d.uniform(0.9, 1.1));
    let mut src = img.clone();
    for p in src.data.chunks_exact_mut(3) {
        let mut q =
            [p[0] + shift[0], p[1] + shift[1], p[2] + shift[2]].map(|v| v.clamp(0.0, 255.0));
        let [hh, ss, vv] = rgb_to_hsv(q);
        q = hsv_to_rgb([hh + dh, (ss * ds).min(1.0), (vv * dv).min(1.0)]);
        for c in 0..3 {
            p[c] = ((q[c] - 127.5) * contrast + 127.5 + 255.0 * bright).clamp(0.0, 255.0);
        }
    }
    // Frequency: a blur (as down/up-sampling leaves) or an unsharp-mask sharpen.
    let sharpen = d.chance(0.5);
    let sigma = d.uniform(0.6, 1.6);
    let blurred = blur_img(&src, sigma);
    if sharpen {
        let amount = d.uniform(0.5, 1.5);
        for (v, b) in src.data.iter_mut().zip(&blurred.data) {
            *v = (*v + amount * (*v - b)).clamp(0.0, 255.0);
        }
    } else {
        src = blurred;
    }
    // Geometry: scale about the centre and translate.
    let s = d.uniform(0.95, 1.05);
    let (tx, ty) = (
        d.uniform(-0.03, 0.03) * w as f32,
        d.uniform(-0.03, 0.03) * h as f32,
    );
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let mut moved = src.clone();
    for y in 0..h {
        for x in 0..w {
            let sx = cx + (x as f32 - cx - tx) / s;
            let sy = cy + (y as f32 - cy - ty) / s;
            let p = src.sample(sx, sy);
            moved.data[3 * (y * w + x)..3 * (y * w + x) + 3].copy_from_slice(&p);
        }
    }
    let params = json!({
        "rgb_shift": shift, "hue": dh, "saturation": ds, "value": dv,
        "brightness": bright, "contrast": contrast,
        "frequency": if sharpen { "sharpen" } else { "blur" }, "sigma": sigma,
        "scale": s, "translate": [tx, ty],
    });
    (moved, params)
}

/// The blending mask: a landmark hull, deformed, eroded/dilated, blurred, scaled by the ratio.
fn blend_mask(
    landmarks: &[(f32, f32)],
    w: usize,
    h: usize,
    d: &mut Draw,
) -> (Vec<f32>, serde_json::Value) {
    let full = d.chance(0.6);
    let mut pts: Vec<(f32, f32)> = FACE_OVAL.iter().map(|&i| landmarks[i]).collect();
    if !full {
        // From the brows down: the oval points below the highest brow point, plus the brows.
        let top = LEFT_BROW
            .iter()
            .chain(&RIGHT_BROW)
            .map(|&i| landmarks[i].1)
            .fold(f32::MAX, f32::min);
        pts.retain(|p| p.1 >= top);
        pts.extend(LEFT_BROW.iter().chain(&RIGHT_BROW).map(|&i| landmarks[i]));
    }
    let (x0, x1) = pts
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let face = (x1 - x0).max(1.0);
    let jitter = d.uniform(0.0, 0.03) * face;
    for p in &mut pts {
        p.0 += jitter * d.normal();
        p.1 += jitter * d.normal();
    }
    let mut mask = hull_mask(&pts, w, h);
    let r = d.below(7);
    let grow = d.chance(0.5);
    mask = morph(&mask, w, h, r, grow);
    let sigma = d.uniform(2.0, 8.0);
    mask = gaussian_blur(&mask, w, h, 1, sigma);
    const RATIOS: [f32; 6] = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0];
    let ratio = RATIOS[d.below(RATIOS.len())];
    // Below 1/255 the blend cannot change an 8-bit pixel: cut the Gaussian tail to exactly 0 so
    // the mask says where the image changed.
    for m in &mut mask {
        *m = if *m * ratio < 0.5 / 255.0 {
            0.0
        } else {
            *m * ratio
        };
    }
    let params = json!({
        "hull": if full { "face" } else { "brows_down" }, "vertex_jitter_px": jitter,
        "morph_radius": r, "morph": if grow { "dilate" } else { "erode" },
        "mask_sigma": sigma, "ratio": ratio,
    });
    (mask, params)
}

/// A self-blended image of `img` (its 468 FaceMesh landmarks in image pixels).
pub fn self_blend(img: &Img, landmarks: &[(f32, f32)], d: &mut Draw) -> Blended {
    let (src, src_params) = jitter_source(img, d);
    let (mask, mask_params) = blend_mask(landmarks, img.w, img.h, d);
    Blended {
        image: img.blend(&src, &mask),
        mask,
        params: json!({"source": src_params, "mask": mask_params}),
    }
}

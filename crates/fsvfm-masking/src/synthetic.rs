//! A parametric, face-like LaPa label map for tests, demos and benchmarks.
//!
//! Not a model of real parsing output, only "real-looking" enough to exercise
//! every label and the boundary rule: an ellipse of skin with hair on top, two
//! brows, two eyes, a nose and lips (upper, inner mouth, lower) on background.

use crate::error::Result;
use crate::labels::{LabelMap, lapa};

/// Geometry of a synthetic face, in fractions of the map size.
///
/// Facial parts are placed in face-normalised coordinates `u = (x − cx)/rx`,
/// `v = (y − cy)/ry`, so they move and scale with the face ellipse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticFace {
    /// Face centre `(x, y)` as fractions of width and height.
    pub center: (f32, f32),
    /// Face ellipse semi-axes `(rx, ry)` as fractions of width and height.
    pub radii: (f32, f32),
    /// How far the hair cap reaches down the face, in `v` units (`-1` = top of the face, `0` = centre).
    pub hairline: f32,
    /// Horizontal offset of each eye from the face centre, in `u` units.
    pub eye_offset: f32,
    /// Mouth height below the centre, in `v` units.
    pub mouth_offset: f32,
}

impl Default for SyntheticFace {
    fn default() -> Self {
        Self {
            center: (0.5, 0.55),
            radii: (0.32, 0.40),
            hairline: -0.45,
            eye_offset: 0.38,
            mouth_offset: 0.5,
        }
    }
}

impl SyntheticFace {
    /// Rasterises the face into a `height × width` label map (pixel centres are sampled).
    ///
    /// # Errors
    /// [`crate::MaskError::EmptyMap`] if a dimension is zero.
    pub fn render(&self, height: usize, width: usize) -> Result<LabelMap> {
        let (cx, cy) = self.center;
        let (rx, ry) = (self.radii.0.max(1e-3), self.radii.1.max(1e-3));
        LabelMap::from_fn(height, width, |r, c| {
            let x = (c as f32 + 0.5) / width as f32;
            let y = (r as f32 + 0.5) / height as f32;
            let u = (x - cx) / rx;
            let v = (y - cy) / ry;
            self.label_at(u, v)
        })
    }

    fn label_at(&self, u: f32, v: f32) -> u8 {
        let inside = |cu: f32, cv: f32, au: f32, av: f32| {
            let du = (u - cu) / au;
            let dv = (v - cv) / av;
            du * du + dv * dv <= 1.0
        };
        let e = self.eye_offset;
        let m = self.mouth_offset;
        // Later parts are drawn over earlier ones, so test them first.
        if inside(0.0, m + 0.02, 0.22, 0.035) {
            return lapa::INNER_MOUTH;
        }
        if inside(0.0, m, 0.32, 0.06) && v < m {
            return lapa::UPPER_LIP;
        }
        if inside(0.0, m + 0.02, 0.30, 0.09) && v >= m {
            return lapa::LOWER_LIP;
        }
        if inside(0.0, 0.12, 0.12, 0.2) {
            return lapa::NOSE;
        }
        // "Right" is the subject's right, i.e. the image's left (facer convention).
        if inside(-e, -0.2, 0.17, 0.07) {
            return lapa::RIGHT_EYE;
        }
        if inside(e, -0.2, 0.17, 0.07) {
            return lapa::LEFT_EYE;
        }
        if inside(-e, -0.38, 0.22, 0.045) {
            return lapa::RIGHT_EYEBROW;
        }
        if inside(e, -0.38, 0.22, 0.045) {
            return lapa::LEFT_EYEBROW;
        }
        let in_face = u * u + v * v <= 1.0;
        // The hair cap: a slightly larger ellipse, above the hairline.
        let hu = u / 1.15;
        let hv = (v + 0.08) / 1.12;
        let in_hair = hu * hu + hv * hv <= 1.0 && v < self.hairline;
        if in_hair {
            lapa::HAIR
        } else if in_face {
            lapa::SKIN
        } else {
            lapa::BACKGROUND
        }
    }
}

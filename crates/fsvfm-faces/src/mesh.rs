//! FaceMesh: 468 facial landmarks from MediaPipe's `face_landmark` model (converted to ONNX by
//! `tools/face/setup.sh`), run with tract on a rotated square crop around a BlazeFace detection,
//! as MediaPipe's `face_landmark_front_cpu` graph does:
//! - region of interest: the detection box, rotated so the eye line is horizontal
//!   (`rotation = −atan2(−(y_left − y_right), x_left − x_right)` from keypoints 0 and 1), made square
//!   on its long side and scaled by 1.5;
//! - input: that region resampled to 192×192, RGB in `[0, 1]`, NCHW;
//! - output: 468 × (x, y, z) in input pixels, and a face-presence logit.

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::FaceError;
use crate::blazeface::{Detection, load_onnx, run_model};

/// Number of FaceMesh landmarks.
pub const NUM_LANDMARKS: usize = 468;
const SIDE: usize = 192;

/// A rotated square region of an image: centre, side and rotation (radians, clockwise on screen
/// since y points down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Roi {
    /// Centre x in pixels.
    pub cx: f32,
    /// Centre y in pixels.
    pub cy: f32,
    /// Side in pixels.
    pub side: f32,
    /// Rotation in radians.
    pub rotation: f32,
}

impl Roi {
    /// The FaceMesh region for a BlazeFace detection (module docs).
    pub fn from_detection(det: &Detection) -> Roi {
        let (re, le) = (det.keypoints[0], det.keypoints[1]);
        let rotation = -(-(le.1 - re.1)).atan2(le.0 - re.0);
        let (cx, cy) = det.bbox.center();
        Roi {
            cx,
            cy,
            side: 1.5 * det.bbox.width().max(det.bbox.height()),
            rotation,
        }
    }

    /// Maps a point of the region's normalised frame (`[0, 1]²`, x along the rotated axis) to
    /// image pixels.
    pub fn to_image(&self, (u, v): (f32, f32)) -> (f32, f32) {
        let (dx, dy) = ((u - 0.5) * self.side, (v - 0.5) * self.side);
        let (s, c) = self.rotation.sin_cos();
        (self.cx + c * dx - s * dy, self.cy + s * dx + c * dy)
    }
}

/// Landmarks of one face in image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Landmarks {
    /// 468 points `(x, y, z)`; `z` is depth relative to the face centre, in the same pixel scale
    /// (smaller = closer to the camera).
    pub points: Vec<[f32; 3]>,
    /// Face-presence probability (sigmoid of the model's logit).
    pub presence: f32,
}

/// A loaded FaceMesh model.
pub struct FaceMesh {
    model: Arc<TypedRunnableModel>,
}

impl FaceMesh {
    /// Loads and optimises `face_landmark.onnx`.
    pub fn load(path: &Path) -> Result<Self, FaceError> {
        Ok(FaceMesh {
            model: load_onnx(path, [1, 3, SIDE, SIDE])?,
        })
    }

    /// The landmarks of the face in `roi`.
    pub fn landmarks(&self, img: &RgbImage, roi: &Roi) -> Result<Landmarks, FaceError> {
        let plane = SIDE * SIDE;
        let mut input = vec![0.0f32; 3 * plane];
        let (w, h) = img.dimensions();
        for v in 0..SIDE {
            for u in 0..SIDE {
                // Corner-aligned sampling as MediaPipe's `warpAffine` (see `blazeface`).
                let (x, y) = roi.to_image((u as f32 / SIDE as f32, v as f32 / SIDE as f32));
                if x < -0.5 || y < -0.5 || x > w as f32 - 0.5 || y > h as f32 - 0.5 {
                    continue;
                }
                let px = crate::sample_bilinear(img, x, y);
                for c in 0..3 {
                    input[c * plane + v * SIDE + u] = px[c] / 255.0;
                }
            }
        }
        let out = run_model(&self.model, input, [1, 3, SIDE, SIDE])?;
        let (coords, logit) = (&out[0], &out[1]);
        if coords.len() != NUM_LANDMARKS * 3 || logit.len() != 1 {
            return Err(FaceError::Model(format!(
                "FaceMesh: expected 1404 coordinates and 1 logit, got {} and {}",
                coords.len(),
                logit.len()
            )));
        }
        let scale = roi.side / SIDE as f32;
        let points = coords
            .chunks_exact(3)
            .map(|p| {
                let (x, y) = roi.to_image((p[0] / SIDE as f32, p[1] / SIDE as f32));
                [x, y, p[2] * scale]
            })
            .collect();
        Ok(Landmarks {
            points,
            presence: 1.0 / (1.0 + (-logit[0]).exp()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BoxF;

    #[test]
    fn roi_is_1_5x_the_long_side_and_levels_the_eyes() {
        let det = Detection {
            bbox: BoxF {
                x0: 0.0,
                y0: 0.0,
                x1: 100.0,
                y1: 80.0,
            },
            // Left eye (image right) lower than the right eye: head tilted clockwise on screen.
            keypoints: [
                (30.0, 30.0),
                (70.0, 70.0),
                (0.0, 0.0),
                (0.0, 0.0),
                (0.0, 0.0),
                (0.0, 0.0),
            ],
            score: 1.0,
        };
        let roi = Roi::from_detection(&det);
        assert_eq!(roi.side, 150.0);
        assert!((roi.rotation - std::f32::consts::FRAC_PI_4).abs() < 1e-6);
        // The crop's x axis follows the eye line.
        let (a, b) = (roi.to_image((0.4, 0.5)), roi.to_image((0.6, 0.5)));
        assert!(((b.1 - a.1) - (b.0 - a.0)).abs() < 1e-3);
        assert_eq!(roi.to_image((0.5, 0.5)), (50.0, 40.0));
    }
}

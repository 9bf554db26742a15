//! BlazeFace face detection (MediaPipe short- and full-range models, converted to ONNX by
//! `tools/face/setup.sh`), run with tract: letterbox, anchor decoding and weighted NMS as
//! MediaPipe's `TensorsToDetectionsCalculator` + `NonMaxSuppressionCalculator` (WEIGHTED).
//!
//! Decoding (spec offline-assets §3.2): each anchor is a unit-size box centred at
//! `((x + 0.5) / g, (y + 0.5) / g)` on a `g × g` grid; the 16 regressors of an anchor are the box
//! centre offset and size and 6 keypoints, in input pixels; the score is
//! `sigmoid(clip(logit, ±100))`.

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::FaceError;
use crate::geometry::BoxF;

/// Which BlazeFace model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Range {
    /// 128×128 input, 896 anchors: faces within ~2 m of the camera (portraits, selfies, most
    /// face-forensics video).
    Short,
    /// 192×192 input, 2304 anchors: small or distant faces.
    Full,
}

impl Range {
    /// The model's square input side in pixels.
    pub fn input_size(self) -> usize {
        match self {
            Range::Short => 128,
            Range::Full => 192,
        }
    }

    /// The ONNX file name in the asset cache.
    pub fn file_name(self) -> &'static str {
        match self {
            Range::Short => "face_detection_short_range.onnx",
            Range::Full => "face_detection_full_range.onnx",
        }
    }

    /// `(grid side, anchors per cell)` per feature map, as MediaPipe's SSD anchor options
    /// (short: strides 8, 16, 16, 16 with 2 anchors each, layers of equal stride merged; full:
    /// stride 4, 1 anchor).
    fn layers(self) -> &'static [(usize, usize)] {
        match self {
            Range::Short => &[(16, 2), (8, 6)],
            Range::Full => &[(48, 1)],
        }
    }
}

/// The anchor centres of a model, `[num_anchors]` of `(x, y)` in `[0, 1]`, in the model's output
/// order (896 for short range, 2304 for full range).
pub fn anchors(range: Range) -> Vec<(f32, f32)> {
    let mut out = Vec::new();
    for &(g, per_cell) in range.layers() {
        for y in 0..g {
            for x in 0..g {
                let c = ((x as f32 + 0.5) / g as f32, (y as f32 + 0.5) / g as f32);
                out.extend(std::iter::repeat_n(c, per_cell));
            }
        }
    }
    out
}

/// Number of BlazeFace keypoints: right eye, left eye, nose tip, mouth centre, right ear
/// tragion, left ear tragion (the subject's sides).
pub const NUM_KEYPOINTS: usize = 6;

/// One detected face, in the pixel coordinates of the image it was detected in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The face box.
    pub bbox: BoxF,
    /// The 6 keypoints `(x, y)` (order: see [`NUM_KEYPOINTS`]).
    pub keypoints: [(f32, f32); NUM_KEYPOINTS],
    /// Detector confidence in `[0, 1]`.
    pub score: f32,
}

/// Decodes raw model outputs into candidate detections in normalised `[0, 1]` coordinates of the
/// model input, keeping those with score ≥ `min_score`.
///
/// `regressors`: `[num_anchors, 16]` row-major; `logits`: `[num_anchors]`.
pub fn decode(
    range: Range,
    regressors: &[f32],
    logits: &[f32],
    min_score: f32,
) -> Result<Vec<Detection>, FaceError> {
    let anchors = anchors(range);
    if regressors.len() != anchors.len() * 16 || logits.len() != anchors.len() {
        return Err(FaceError::Model(format!(
            "BlazeFace {range:?}: expected {} anchors x 16 regressors, got {} values and {} scores",
            anchors.len(),
            regressors.len(),
            logits.len()
        )));
    }
    let s = range.input_size() as f32;
    let mut out = Vec::new();
    for (i, &(ax, ay)) in anchors.iter().enumerate() {
        let score = 1.0 / (1.0 + (-logits[i].clamp(-100.0, 100.0)).exp());
        if score < min_score || !score.is_finite() {
            continue;
        }
        let r = &regressors[i * 16..(i + 1) * 16];
        let (cx, cy) = (r[0] / s + ax, r[1] / s + ay);
        let (w, h) = (r[2] / s, r[3] / s);
        let mut keypoints = [(0.0, 0.0); NUM_KEYPOINTS];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = (r[4 + 2 * k] / s + ax, r[5 + 2 * k] / s + ay);
        }
        out.push(Detection {
            bbox: BoxF {
                x0: cx - w / 2.0,
                y0: cy - h / 2.0,
                x1: cx + w / 2.0,
                y1: cy + h / 2.0,
            },
            keypoints,
            score,
        });
    }
    Ok(out)
}

/// MediaPipe's weighted non-maximum suppression: take the best remaining candidate, average the
/// box and keypoints of every candidate overlapping it by IoU > `iou_threshold` (itself included),
/// weighted by score, keep the best score; repeat. Output sorted by score, best first.
pub fn weighted_nms(mut candidates: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !candidates.is_empty() {
        let best = candidates[0].bbox;
        let (cluster, rest): (Vec<Detection>, Vec<Detection>) = candidates
            .into_iter()
            .partition(|d| d.bbox.iou(&best) > iou_threshold || d.bbox == best);
        candidates = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut merged = cluster[0].clone();
        let avg = |f: &dyn Fn(&Detection) -> f32| {
            cluster.iter().map(|d| f(d) * d.score).sum::<f32>() / total
        };
        merged.bbox = BoxF {
            x0: avg(&|d| d.bbox.x0),
            y0: avg(&|d| d.bbox.y0),
            x1: avg(&|d| d.bbox.x1),
            y1: avg(&|d| d.bbox.y1),
        };
        for k in 0..NUM_KEYPOINTS {
            merged.keypoints[k] = (avg(&|d| d.keypoints[k].0), avg(&|d| d.keypoints[k].1));
        }
        out.push(merged);
    }
    out
}

/// The letterbox that fits a `width × height` image into the square model input: the image is
/// scaled by `side / max(width, height)` and centred, the rest padded black (MediaPipe's
/// `ImageToTensorCalculator` with `keep_aspect_ratio`).
#[derive(Debug, Clone, Copy)]
struct Letterbox {
    /// Image pixels per normalised input unit.
    scale: f32,
    /// Normalised input coordinate of the image's left/top edge.
    pad_x: f32,
    pad_y: f32,
}

impl Letterbox {
    fn new(width: u32, height: u32) -> Self {
        let long = width.max(height) as f32;
        Letterbox {
            scale: long,
            pad_x: (long - width as f32) / (2.0 * long),
            pad_y: (long - height as f32) / (2.0 * long),
        }
    }

    fn to_image(self, (x, y): (f32, f32)) -> (f32, f32) {
        ((x - self.pad_x) * self.scale, (y - self.pad_y) * self.scale)
    }
}

/// A loaded BlazeFace model.
pub struct Detector {
    range: Range,
    model: Arc<TypedRunnableModel>,
    /// Minimum score of a kept detection (MediaPipe's default 0.5).
    pub min_score: f32,
    /// IoU above which candidates are merged (MediaPipe's 0.3).
    pub iou_threshold: f32,
}

impl Detector {
    /// Loads and optimises the model file for `range`.
    pub fn load(path: &Path, range: Range) -> Result<Self, FaceError> {
        let s = range.input_size();
        let model = load_onnx(path, [1, 3, s, s])?;
        Ok(Detector {
            range,
            model,
            min_score: 0.5,
            iou_threshold: 0.3,
        })
    }

    /// Which model this is.
    pub fn range(&self) -> Range {
        self.range
    }

    /// Detects faces in `img`, best score first, in the image's pixel coordinates.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Detection>, FaceError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(FaceError::Input("empty image".into()));
        }
        let side = self.range.input_size();
        let lb = Letterbox::new(w, h);
        let input = letterbox_input(img, side, lb);
        let out = run_model(&self.model, input, [1, 3, side, side])?;
        let (regs, logits) = (&out[0], &out[1]);
        let cands = decode(self.range, regs, logits, self.min_score)?;
        let mut dets = weighted_nms(cands, self.iou_threshold);
        for d in &mut dets {
            let (x0, y0) = lb.to_image((d.bbox.x0, d.bbox.y0));
            let (x1, y1) = lb.to_image((d.bbox.x1, d.bbox.y1));
            d.bbox = BoxF { x0, y0, x1, y1 };
            for kp in &mut d.keypoints {
                *kp = lb.to_image(*kp);
            }
        }
        Ok(dets)
    }
}

/// The letterboxed model input `[1, 3, side, side]`, RGB scaled to `[-1, 1]` (MediaPipe's detector
/// input range), bilinear sampling, padding `-1` (black).
fn letterbox_input(img: &RgbImage, side: usize, lb: Letterbox) -> Vec<f32> {
    let plane = side * side;
    let mut out = vec![-1.0f32; 3 * plane];
    let (w, h) = img.dimensions();
    for v in 0..side {
        for u in 0..side {
            // MediaPipe's CPU `ImageToTensorCalculator` is an OpenCV `warpAffine` that maps input
            // pixel `u` to image pixel index `u · scale` (corner-aligned, no half-pixel shift),
            // with a zero border; sampling the same way reproduces its boxes to < 0.01 px.
            let (x, y) = lb.to_image((u as f32 / side as f32, v as f32 / side as f32));
            if x < 0.0 || y < 0.0 || x > (w - 1) as f32 || y > (h - 1) as f32 {
                continue;
            }
            let px = crate::sample_bilinear(img, x, y);
            for c in 0..3 {
                out[c * plane + v * side + u] = px[c] / 127.5 - 1.0;
            }
        }
    }
    out
}

/// Loads an ONNX file with a fixed input shape and optimises it for tract.
pub(crate) fn load_onnx(
    path: &Path,
    shape: [usize; 4],
) -> Result<Arc<TypedRunnableModel>, FaceError> {
    let err = |e: TractError| FaceError::Model(format!("{}: {e:#}", path.display()));
    tract_onnx::onnx()
        .model_for_path(path)
        .map_err(err)?
        .with_input_fact(0, f32::fact(shape).into())
        .map_err(err)?
        .into_optimized()
        .map_err(err)?
        .into_runnable()
        .map_err(err)
}

/// Runs a single-input model and returns every output flattened.
pub(crate) fn run_model(
    model: &Arc<TypedRunnableModel>,
    input: Vec<f32>,
    shape: [usize; 4],
) -> Result<Vec<Vec<f32>>, FaceError> {
    let err = |e: TractError| FaceError::Model(format!("{e:#}"));
    let t = Tensor::from_shape(&shape, &input).map_err(err)?;
    let outs = model.run(tvec!(t.into())).map_err(err)?;
    outs.iter()
        .map(|o| {
            o.to_plain_array_view::<f32>()
                .map(|v| v.iter().copied().collect())
                .map_err(err)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts_and_first_centres_match_mediapipe() {
        let a = anchors(Range::Short);
        assert_eq!(a.len(), 896);
        assert_eq!(a[0], (0.5 / 16.0, 0.5 / 16.0));
        assert_eq!(a[1], a[0]);
        assert_eq!(a[512], (0.5 / 8.0, 0.5 / 8.0));
        assert_eq!(a[895], (7.5 / 8.0, 7.5 / 8.0));
        let f = anchors(Range::Full);
        assert_eq!(f.len(), 2304);
        assert_eq!(f[49], (1.5 / 48.0, 1.5 / 48.0));
    }

    #[test]
    fn decode_places_box_and_keypoints_relative_to_the_anchor() {
        let n = 896;
        let mut regs = vec![0.0f32; n * 16];
        let mut logits = vec![-10.0f32; n];
        // Anchor 512 is the first 8x8 cell, centre (1/16, 1/16).
        let i = 512;
        regs[i * 16..i * 16 + 4].copy_from_slice(&[12.8, -6.4, 25.6, 38.4]);
        regs[i * 16 + 4] = 6.4;
        logits[i] = 2.0;
        let d = decode(Range::Short, &regs, &logits, 0.5).unwrap();
        assert_eq!(d.len(), 1);
        let (cx, cy) = d[0].bbox.center();
        assert!((cx - (0.0625 + 0.1)).abs() < 1e-6 && (cy - (0.0625 - 0.05)).abs() < 1e-6);
        assert!((d[0].bbox.width() - 0.2).abs() < 1e-6 && (d[0].bbox.height() - 0.3).abs() < 1e-6);
        assert!((d[0].keypoints[0].0 - 0.1125).abs() < 1e-6);
        assert!((d[0].score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        assert!(decode(Range::Short, &regs[..16], &logits, 0.5).is_err());
    }

    #[test]
    fn weighted_nms_averages_overlapping_boxes_by_score() {
        let det = |x0: f32, score: f32| Detection {
            bbox: BoxF {
                x0,
                y0: 0.0,
                x1: x0 + 1.0,
                y1: 1.0,
            },
            keypoints: [(x0, 0.0); NUM_KEYPOINTS],
            score,
        };
        let out = weighted_nms(vec![det(0.1, 0.6), det(0.0, 0.9), det(5.0, 0.7)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        // (0.0 * 0.9 + 0.1 * 0.6) / 1.5 = 0.04
        assert!((out[0].bbox.x0 - 0.04).abs() < 1e-6);
        assert!((out[0].keypoints[3].0 - 0.04).abs() < 1e-6);
        assert_eq!(out[1].bbox.x0, 5.0);
    }

    #[test]
    fn letterbox_maps_normalised_input_back_to_image_pixels() {
        // 200 x 100: scaled into the middle half vertically.
        let lb = Letterbox::new(200, 100);
        assert_eq!(lb.to_image((0.0, 0.25)), (0.0, 0.0));
        assert_eq!(lb.to_image((1.0, 0.75)), (200.0, 100.0));
    }
}

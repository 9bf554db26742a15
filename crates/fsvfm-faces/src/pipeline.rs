//! One image → its faces: detection, the FSFM crop, landmarks and the region map.

use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

use crate::FaceError;
use crate::assets::Assets;
use crate::blazeface::{Detection, Detector, Range};
use crate::geometry::{BoxF, DlibCalibration, PixelRect, fsfm_crop};
use crate::mesh::{FaceMesh, Roi};
use crate::regions::region_map;
use fsvfm_masking::LabelMap;

/// Which detector(s) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DetectorChoice {
    /// Short range, then full range when short range finds nothing (the default: portraits are
    /// fast, small faces still found).
    #[default]
    Auto,
    /// Short range only.
    Short,
    /// Full range only.
    Full,
}

/// Pipeline settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineOptions {
    /// Detector(s) to run.
    pub detector: DetectorChoice,
    /// Keep every face (else the largest only, as FSFM keeps one face per image).
    pub all_faces: bool,
    /// Minimum detector score.
    pub min_score: f32,
    /// Minimum FaceMesh face-presence probability; below it the face is dropped.
    pub min_presence: f32,
    /// Crop side as a multiple of the (calibrated) box's long side (FSFM: 1.3).
    pub crop_scale: f64,
    /// Output crop side in pixels (FSFM: 224).
    pub size: u32,
    /// BlazeFace → dlib box calibration applied before cropping.
    pub calibration: DlibCalibration,
    /// Label hair with the colour heuristic of [`crate::regions`].
    pub hair: bool,
    /// Rotate the crop so the eyes are level (an aligned crop; FSFM's own crops are not aligned).
    pub align: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            detector: DetectorChoice::Auto,
            all_faces: false,
            min_score: 0.5,
            min_presence: 0.5,
            crop_scale: 1.3,
            size: 224,
            calibration: DlibCalibration::FSFM_DLIB,
            hair: true,
            align: false,
        }
    }
}

/// One processed face.
#[derive(Debug, Clone)]
pub struct Face {
    /// The detection in source-image pixels.
    pub detection: Detection,
    /// Which detector found it.
    pub range: Range,
    /// The calibrated (dlib-like) box the crop is built on.
    pub face_box: BoxF,
    /// The crop rectangle in source-image pixels.
    pub crop_rect: PixelRect,
    /// Where the crop sits in the source image (rotation 0 unless aligned).
    pub frame: CropFrame,
    /// The crop resized to `size × size` (bicubic).
    pub crop: RgbImage,
    /// 468 landmarks `(x, y, z)` in crop pixels (after the resize).
    pub landmarks: Vec<[f32; 3]>,
    /// FaceMesh face-presence probability.
    pub presence: f32,
    /// The region map of the crop (`size × size`, LaPa ids).
    pub regions: LabelMap,
}

/// Where a crop sits in its source image: the `size × size` crop covers a square of `side`
/// source pixels centred at `(cx, cy)` and rotated by `rotation` radians (clockwise on screen; 0
/// for FSFM's unaligned crops).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CropFrame {
    /// Centre x in source pixels.
    pub cx: f32,
    /// Centre y in source pixels.
    pub cy: f32,
    /// Side in source pixels.
    pub side: f32,
    /// Rotation in radians.
    pub rotation: f32,
    /// Crop side in pixels.
    pub size: u32,
}

impl CropFrame {
    /// Source-image point → crop pixels.
    pub fn to_crop(&self, (x, y): (f32, f32)) -> (f32, f32) {
        let (s, c) = self.rotation.sin_cos();
        let (dx, dy) = (x - self.cx, y - self.cy);
        let k = self.size as f32 / self.side;
        (
            (c * dx + s * dy) * k + 0.5 * self.size as f32,
            (-s * dx + c * dy) * k + 0.5 * self.size as f32,
        )
    }

    /// Crop pixels → source-image point (inverse of [`Self::to_crop`]).
    pub fn to_image(&self, (u, v): (f32, f32)) -> (f32, f32) {
        let (s, c) = self.rotation.sin_cos();
        let k = self.side / self.size as f32;
        let (du, dv) = (
            (u - 0.5 * self.size as f32) * k,
            (v - 0.5 * self.size as f32) * k,
        );
        (self.cx + c * du - s * dv, self.cy + s * du + c * dv)
    }
}

/// Why an image produced no face.
#[derive(Debug, Clone, PartialEq)]
pub enum NoFace {
    /// No detection above the score threshold.
    NotDetected,
    /// Detections, but FaceMesh rejected all of them (presence below threshold); the best
    /// presence seen.
    LowPresence(f32),
    /// The crop fell outside the image.
    EmptyCrop,
}

impl std::fmt::Display for NoFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoFace::NotDetected => write!(f, "no face detected"),
            NoFace::LowPresence(p) => {
                write!(
                    f,
                    "face detected but landmarks rejected it (presence {p:.2})"
                )
            }
            NoFace::EmptyCrop => write!(f, "face box outside the image"),
        }
    }
}

/// The loaded models and settings. Shared across threads (`&self` methods only).
pub struct FacePipeline {
    short: Detector,
    full: Detector,
    mesh: FaceMesh,
    /// Settings.
    pub options: PipelineOptions,
}

impl FacePipeline {
    /// Loads the models from `assets`.
    pub fn load(assets: &Assets, options: PipelineOptions) -> Result<Self, FaceError> {
        let mut short = Detector::load(&assets.detector(Range::Short), Range::Short)?;
        let mut full = Detector::load(&assets.detector(Range::Full), Range::Full)?;
        short.min_score = options.min_score;
        full.min_score = options.min_score;
        Ok(FacePipeline {
            short,
            full,
            mesh: FaceMesh::load(&assets.mesh())?,
            options,
        })
    }

    /// Detections of the configured detector(s), best first.
    pub fn detect(&self, img: &RgbImage) -> Result<(Range, Vec<Detection>), FaceError> {
        match self.options.detector {
            DetectorChoice::Short => Ok((Range::Short, self.short.detect(img)?)),
            DetectorChoice::Full => Ok((Range::Full, self.full.detect(img)?)),
            DetectorChoice::Auto => {
                let d = self.short.detect(img)?;
                if d.is_empty() {
                    Ok((Range::Full, self.full.detect(img)?))
                } else {
                    Ok((Range::Short, d))
                }
            }
        }
    }

    /// The FSFM crop of one detection: the calibrated box, the crop rectangle in `img`, where the
    /// crop sits, and the crop resized to `size × size` (bicubic); `None` when the box falls
    /// outside the image.
    ///
    /// Aligned (`align`): the same square (before FSFM's clipping at the border) rotated about
    /// its centre so the BlazeFace eye keypoints are level; border pixels are replicated where it
    /// leaves the image. The region is first resized (bicubic) to the output scale, then rotated
    /// with bilinear sampling at that scale, so nothing aliases.
    pub fn crop(
        &self,
        img: &RgbImage,
        det: &Detection,
    ) -> Option<(BoxF, PixelRect, CropFrame, RgbImage)> {
        let o = &self.options;
        let face_box = o.calibration.apply(&det.bbox);
        let rect = fsfm_crop(&face_box, o.crop_scale, img.width(), img.height())?;
        if !o.align {
            let sub =
                imageops::crop_imm(img, rect.x0, rect.y0, rect.width(), rect.height()).to_image();
            let crop = imageops::resize(&sub, o.size, o.size, FilterType::CatmullRom);
            let side = rect.width() as f32;
            let frame = CropFrame {
                cx: rect.x0 as f32 + side / 2.0,
                cy: rect.y0 as f32 + side / 2.0,
                side,
                rotation: 0.0,
                size: o.size,
            };
            return Some((face_box, rect, frame, crop));
        }
        let (cx, cy) = face_box.center();
        let side =
            ((face_box.width().max(face_box.height()) as f64 * o.crop_scale) as f32).max(1.0);
        let frame = CropFrame {
            cx,
            cy,
            side,
            rotation: Roi::from_detection(det).rotation,
            size: o.size,
        };
        // The axis-aligned bounds of the rotated square, clipped to the image.
        let corners = [
            (0.0, 0.0),
            (o.size as f32, 0.0),
            (0.0, o.size as f32),
            (o.size as f32, o.size as f32),
        ]
        .map(|p| frame.to_image(p));
        let (w, h) = img.dimensions();
        let clampx = |v: f32| (v.max(0.0) as u32).min(w.saturating_sub(1));
        let clampy = |v: f32| (v.max(0.0) as u32).min(h.saturating_sub(1));
        let bx0 = clampx(corners.iter().map(|p| p.0).fold(f32::MAX, f32::min).floor());
        let by0 = clampy(corners.iter().map(|p| p.1).fold(f32::MAX, f32::min).floor());
        let bx1 = clampx(corners.iter().map(|p| p.0).fold(f32::MIN, f32::max).ceil()) + 1;
        let by1 = clampy(corners.iter().map(|p| p.1).fold(f32::MIN, f32::max).ceil()) + 1;
        let f = o.size as f32 / side;
        let (iw, ih) = (
            (((bx1 - bx0) as f32) * f).round().max(1.0) as u32,
            (((by1 - by0) as f32) * f).round().max(1.0) as u32,
        );
        let sub = imageops::crop_imm(img, bx0, by0, bx1 - bx0, by1 - by0).to_image();
        let inter = imageops::resize(&sub, iw, ih, FilterType::CatmullRom);
        let (fx, fy) = (
            iw as f32 / (bx1 - bx0) as f32,
            ih as f32 / (by1 - by0) as f32,
        );
        let mut crop = RgbImage::new(o.size, o.size);
        for (u, v, px) in crop.enumerate_pixels_mut() {
            let (x, y) = frame.to_image((u as f32 + 0.5, v as f32 + 0.5));
            let p = crate::sample_bilinear(
                &inter,
                (x - bx0 as f32) * fx - 0.5,
                (y - by0 as f32) * fy - 0.5,
            );
            *px = image::Rgb(p.map(|c| c.round().clamp(0.0, 255.0) as u8));
        }
        Some((face_box, rect, frame, crop))
    }

    /// Detection and crop only (no landmarks, no region map): what a detector's input needs.
    /// The largest face only unless `all_faces`; largest first.
    pub fn crops(
        &self,
        img: &RgbImage,
    ) -> Result<Vec<(Detection, PixelRect, RgbImage)>, FaceError> {
        self.crops_of(img, self.options.all_faces)
    }

    /// [`FacePipeline::crops`] with `all_faces` given per call (a service answers both kinds of
    /// request from one pipeline).
    pub fn crops_of(
        &self,
        img: &RgbImage,
        all_faces: bool,
    ) -> Result<Vec<(Detection, PixelRect, RgbImage)>, FaceError> {
        let (_, mut dets) = self.detect(img)?;
        dets.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        if !all_faces {
            dets.truncate(1);
        }
        Ok(dets
            .into_iter()
            .filter_map(|d| self.crop(img, &d).map(|(_, rect, _, crop)| (d, rect, crop)))
            .collect())
    }

    /// The faces of `img` (the largest only unless `all_faces`), or why there is none.
    pub fn process(&self, img: &RgbImage) -> Result<Result<Vec<Face>, NoFace>, FaceError> {
        let (range, mut dets) = self.detect(img)?;
        if dets.is_empty() {
            return Ok(Err(NoFace::NotDetected));
        }
        // Largest first, as a portrait's subject is the largest face.
        dets.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        let mut faces = Vec::new();
        let mut best_presence = 0.0f32;
        let mut empty_crop = false;
        for det in dets {
            let marks = self.mesh.landmarks(img, &Roi::from_detection(&det))?;
            best_presence = best_presence.max(marks.presence);
            if marks.presence < self.options.min_presence {
                continue;
            }
            let o = &self.options;
            let Some((face_box, rect, frame, crop)) = self.crop(img, &det) else {
                empty_crop = true;
                continue;
            };
            let k = o.size as f32 / frame.side;
            let landmarks: Vec<[f32; 3]> = marks
                .points
                .iter()
                .map(|p| {
                    let (u, v) = frame.to_crop((p[0], p[1]));
                    [u, v, p[2] * k]
                })
                .collect();
            let xy: Vec<(f32, f32)> = landmarks.iter().map(|p| (p[0], p[1])).collect();
            let regions = region_map(&xy, o.hair.then_some(&crop), o.size as usize);
            faces.push(Face {
                detection: det,
                range,
                face_box,
                crop_rect: rect,
                frame,
                crop,
                landmarks,
                presence: marks.presence,
                regions,
            });
            if !o.all_faces {
                break;
            }
        }
        if faces.is_empty() {
            return Ok(Err(if empty_crop {
                NoFace::EmptyCrop
            } else {
                NoFace::LowPresence(best_presence)
            }));
        }
        Ok(Ok(faces))
    }
}

/// The crop with its region map blended on top (50%) and the landmarks as dots: the picture to
/// check a region map by eye.
pub fn overlay(face: &Face) -> RgbImage {
    let colours = fsvfm_masking::render::colorize_labels(&face.regions);
    let mut out = face.crop.clone();
    for (o, c) in out.pixels_mut().zip(colours.pixels()) {
        for k in 0..3 {
            o.0[k] = ((o.0[k] as u16 + c.0[k] as u16) / 2) as u8;
        }
    }
    let (w, h) = out.dimensions();
    for p in &face.landmarks {
        let (x, y) = (p[0].round() as i64, p[1].round() as i64);
        if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
            out.put_pixel(x as u32, y as u32, image::Rgb([255, 255, 255]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_frame_round_trips_and_matches_the_plain_crop_formula() {
        let plain = CropFrame {
            cx: 150.0,
            cy: 100.0,
            side: 100.0,
            rotation: 0.0,
            size: 224,
        };
        // Unrotated: (x - x0) * size / side with x0 = cx - side / 2.
        let (u, v) = plain.to_crop((120.0, 60.0));
        assert!((u - 20.0 * 2.24).abs() < 1e-4 && (v - 10.0 * 2.24).abs() < 1e-4);
        let rotated = CropFrame {
            rotation: 0.3,
            ..plain
        };
        let back = rotated.to_image(rotated.to_crop((123.0, 77.0)));
        assert!((back.0 - 123.0).abs() < 1e-3 && (back.1 - 77.0).abs() < 1e-3);
        // The crop's centre is the frame's centre whatever the rotation.
        assert_eq!(rotated.to_image((112.0, 112.0)), (150.0, 100.0));
    }
}

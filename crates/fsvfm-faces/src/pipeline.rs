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
    /// The crop resized to `size × size` (bicubic).
    pub crop: RgbImage,
    /// 468 landmarks `(x, y, z)` in crop pixels (after the resize).
    pub landmarks: Vec<[f32; 3]>,
    /// FaceMesh face-presence probability.
    pub presence: f32,
    /// The region map of the crop (`size × size`, LaPa ids).
    pub regions: LabelMap,
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
            let face_box = o.calibration.apply(&det.bbox);
            let Some(rect) = fsfm_crop(&face_box, o.crop_scale, img.width(), img.height()) else {
                empty_crop = true;
                continue;
            };
            let sub =
                imageops::crop_imm(img, rect.x0, rect.y0, rect.width(), rect.height()).to_image();
            let crop = imageops::resize(&sub, o.size, o.size, FilterType::CatmullRom);
            let k = o.size as f32 / rect.width() as f32;
            let landmarks: Vec<[f32; 3]> = marks
                .points
                .iter()
                .map(|p| {
                    [
                        (p[0] - rect.x0 as f32) * k,
                        (p[1] - rect.y0 as f32) * k,
                        p[2] * k,
                    ]
                })
                .collect();
            let xy: Vec<(f32, f32)> = landmarks.iter().map(|p| (p[0], p[1])).collect();
            let regions = region_map(&xy, o.hair.then_some(&crop), o.size as usize);
            faces.push(Face {
                detection: det,
                range,
                face_box,
                crop_rect: rect,
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

//! `fsvfm predict`: P(fake) for every face in new images and videos.
//!
//! Each input is decoded (video: K frames at `linspace`), faces are detected and cropped exactly as
//! `fsvfm prepare` does for training (BlazeFace, dlib-calibrated FSFM 1.3× box, bicubic to the
//! model's size), normalised with the checkpoint's pre-training mean/std and scored in batches
//! that span files. One JSON line per face (`file, frame, face_index, box, p_fake`), one per input
//! without a usable face (`error`), and one per video with the mean over its faces (the papers'
//! video-level score). `--heatmap DIR` writes the last block's class-token attention over each
//! crop (Fig. 5 style).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use fsvfm_faces::assets::Assets;
use fsvfm_faces::pipeline::{FacePipeline, PipelineOptions};
use fsvfm_faces::prepare::{Input, list_inputs};
use fsvfm_faces::video::{FrameSelection, frame_count, frame_indices, is_video_file, read_frames};
use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::eval::Classifier;

/// Arguments of `fsvfm predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Images, videos, folders (searched recursively) or list files (.txt).
    #[arg(required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Classifier checkpoint (official fine-tuned `.pth`, FS-Adapter, or ours).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Architecture: a preset or JSON config; default as `fsvfm eval`.
    #[arg(long)]
    model: Option<String>,
    /// Normalisation (`pretrain_ds_mean_std.txt` or `vggface2`); default as `fsvfm eval`.
    #[arg(long)]
    mean_std: Option<String>,
    /// Index of the "fake" class in the head (official FSFM heads: 0).
    #[arg(long, default_value_t = 0)]
    fake_index: usize,
    /// Frames per video (uniform, np.linspace).
    #[arg(long, default_value_t = 32)]
    frames: usize,
    /// Score every face (default: the largest face of each image or frame).
    #[arg(long)]
    all_faces: bool,
    /// Faces per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// `jsonl` (one object per line) or `table`.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write results here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The inputs are face crops already (as `prepare` writes them, and as `eval` scores them):
    /// no detection, each image resized to the model's input as `eval` does. Images only.
    #[arg(long, conflicts_with = "all_faces")]
    crops: bool,
    /// Write attention heat maps (crop + last-block class-token attention) into this folder.
    #[arg(long)]
    heatmap: Option<PathBuf>,
    /// Folder holding the converted face models (default: $FSVFM_HOME/models).
    #[arg(long)]
    models: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Format {
    Jsonl,
    Table,
}

/// One output record.
#[derive(Serialize, Debug, Clone)]
struct Record {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    face_index: Option<usize>,
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    bbox: Option<[f32; 4]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p_fake: Option<f64>,
    /// Video summary line: frames with a scored face.
    #[serde(skip_serializing_if = "Option::is_none")]
    video_frames: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Record {
    fn error(file: &str, frame: Option<usize>, error: String) -> Self {
        Record {
            file: file.into(),
            frame,
            face_index: None,
            bbox: None,
            p_fake: None,
            video_frames: None,
            heatmap: None,
            error: Some(error),
        }
    }
}

/// A face waiting to be scored.
struct Pending {
    record: Record,
    name: String,
    crop: RgbImage,
}

/// What one input gave: faces to score and records for what had none.
struct Decoded {
    video: bool,
    /// Whether the input could be read at all.
    readable: bool,
    faces: Vec<Pending>,
    errors: Vec<Record>,
}

/// Faces of one input: detected and cropped by `p`, or with `p = None` (`--crops`) the image
/// itself, resized to `size` as `eval` does.
fn decode_input(
    p: Option<&FacePipeline>,
    input: &Input,
    frames: usize,
    size: u32,
) -> Result<Decoded> {
    let file = input.path.display().to_string();
    let mut d = Decoded {
        video: is_video_file(&input.path),
        readable: true,
        faces: Vec::new(),
        errors: Vec::new(),
    };
    let unreadable = |d: &mut Decoded, why: String| {
        d.readable = false;
        d.errors.push(Record::error(&file, None, why));
    };
    let images: Vec<(Option<usize>, RgbImage)> = if d.video {
        let got = frame_count(&input.path).and_then(|n| {
            read_frames(
                &input.path,
                &frame_indices(n, FrameSelection::Uniform(frames)),
            )
        });
        match got {
            Ok(f) => f.into_iter().map(|(i, img)| (Some(i), img)).collect(),
            Err(fsvfm_faces::FaceError::Input(msg)) => {
                unreadable(&mut d, msg);
                return Ok(d);
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        match image::open(&input.path) {
            Ok(img) => vec![(None, img.to_rgb8())],
            Err(e) => {
                unreadable(&mut d, format!("unreadable image: {e}"));
                return Ok(d);
            }
        }
    };
    for (frame, img) in images {
        let crops: Vec<(Option<[f32; 4]>, RgbImage)> = match p {
            Some(p) => p
                .crops(&img)?
                .into_iter()
                .map(|(det, _, crop)| {
                    let b = det.bbox;
                    (Some([b.x0, b.y0, b.x1, b.y1]), crop)
                })
                .collect(),
            None => vec![(None, fsvfm_data::image_io::to_input_size(img, size))],
        };
        if crops.is_empty() {
            d.errors
                .push(Record::error(&file, frame, "no face detected".into()));
        }
        for (k, (bbox, crop)) in crops.into_iter().enumerate() {
            let mut name = input.name.clone();
            if let Some(f) = frame {
                name += &format!("_frame_{f:05}");
            }
            if k > 0 {
                name += &format!("_face{k}");
            }
            d.faces.push(Pending {
                record: Record {
                    file: file.clone(),
                    frame,
                    face_index: Some(k),
                    bbox,
                    p_fake: None,
                    video_frames: None,
                    heatmap: None,
                    error: None,
                },
                name,
                crop,
            });
        }
    }
    Ok(d)
}

/// Normalised `[3, S, S]` pixels of a crop.
fn normalise(crop: &RgbImage, norm: &fsvfm_data::MeanStd) -> Vec<f32> {
    let mut x = fsvfm_data::image_io::rgb_to_chw(crop);
    norm.apply(&mut x);
    x
}

/// A blue→red colour for `t` in `[0, 1]` (jet-like).
fn heat_colour(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let ramp = |c: f32| (1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0);
    [ramp(3.0), ramp(2.0), ramp(1.0)]
}

/// The crop with a `g × g` attention map (raster order) upsampled bilinearly, min–max scaled and
/// blended at 50%.
fn heatmap_picture(crop: &RgbImage, map: &[f32]) -> RgbImage {
    let g = (map.len() as f64).sqrt() as usize;
    let (lo, hi) = map
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-12);
    let (w, h) = crop.dimensions();
    let mut out = crop.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        // Patch-centre coordinates.
        let fx = ((x as f32 + 0.5) / w as f32 * g as f32 - 0.5).clamp(0.0, (g - 1) as f32);
        let fy = ((y as f32 + 0.5) / h as f32 * g as f32 - 0.5).clamp(0.0, (g - 1) as f32);
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(g - 1), (y0 + 1).min(g - 1));
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let at = |r: usize, c: usize| map[r * g + c];
        let v = (at(y0, x0) * (1.0 - ax) + at(y0, x1) * ax) * (1.0 - ay)
            + (at(y1, x0) * (1.0 - ax) + at(y1, x1) * ax) * ay;
        let c = heat_colour((v - lo) / span);
        for (o, h) in px.0.iter_mut().zip(c) {
            *o = (0.5 * *o as f32 + 0.5 * 255.0 * h).round() as u8;
        }
    }
    out
}

/// Runs `fsvfm predict`.
pub fn predict_cmd(a: PredictArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    ensure!(a.frames > 0, "--frames must be at least 1");
    let clf = Classifier::load(
        &a.checkpoint,
        a.model.as_deref(),
        a.mean_std.as_deref(),
        a.fake_index,
    )?;
    let pipeline = if a.crops {
        None
    } else {
        let assets = Assets::in_dir_or_home(a.models.as_deref())?;
        Some(
            FacePipeline::load(
                &assets,
                PipelineOptions {
                    all_faces: a.all_faces,
                    size: clf.size as u32,
                    ..PipelineOptions::default()
                },
            )
            .context("loading the face models")?,
        )
    };
    let size = clf.size as u32;
    let mut inputs = Vec::new();
    for i in &a.inputs {
        inputs.extend(list_inputs(i)?);
    }
    ensure!(!inputs.is_empty(), "no images or videos among the inputs");
    if let Some(dir) = &a.heatmap {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    if a.format == Format::Table {
        writeln!(
            out,
            "{:<48} {:>6} {:>4} {:>8}  note",
            "file", "frame", "face", "p_fake"
        )?;
    }
    let start = Instant::now();
    let (mut faces_scored, mut readable_inputs) = (0usize, 0usize);
    // Files are decoded and detected in parallel a chunk at a time; the chunk's faces are scored
    // together, so batches span files.
    let chunk = (4 * a.batch_size).max(rayon::current_num_threads());
    for files in inputs.chunks(chunk) {
        let decoded: Vec<Result<Decoded>> = files
            .par_iter()
            .map(|i| decode_input(pipeline.as_ref(), i, a.frames, size))
            .collect();
        let decoded: Vec<Decoded> = decoded.into_iter().collect::<Result<_>>()?;
        let mut pixels = Vec::new();
        for f in decoded.iter().flat_map(|d| &d.faces) {
            pixels.extend(normalise(&f.crop, &clf.norm));
        }
        let scores = clf.p_fake(&pixels, a.batch_size)?;
        let maps = match &a.heatmap {
            Some(_) if !pixels.is_empty() => Some(clf.attention(&pixels)?),
            _ => None,
        };
        let per_face = maps.as_ref().map(|m| m.len() / scores.len().max(1));
        let mut k = 0;
        for (input, d) in files.iter().zip(decoded) {
            readable_inputs += d.readable as usize;
            let mut video_scores = Vec::new();
            for mut f in d.faces {
                f.record.p_fake = Some(scores[k]);
                if let (Some(dir), Some(m), Some(l)) = (&a.heatmap, &maps, per_face) {
                    let path = dir.join(format!("{}.png", f.name));
                    heatmap_picture(&f.crop, &m[k * l..(k + 1) * l])
                        .save(&path)
                        .with_context(|| format!("writing {}", path.display()))?;
                    f.record.heatmap = Some(path.display().to_string());
                }
                k += 1;
                faces_scored += 1;
                video_scores.push(scores[k - 1]);
                emit(&mut out, a.format, &f.record)?;
            }
            for e in &d.errors {
                emit(&mut out, a.format, e)?;
            }
            if d.video && !video_scores.is_empty() {
                let mean = video_scores.iter().sum::<f64>() / video_scores.len() as f64;
                let summary = Record {
                    file: input.path.display().to_string(),
                    frame: None,
                    face_index: None,
                    bbox: None,
                    p_fake: Some(mean),
                    video_frames: Some(video_scores.len()),
                    heatmap: None,
                    error: None,
                };
                emit(&mut out, a.format, &summary)?;
            }
        }
    }
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} inputs ({} readable), {faces_scored} faces scored in {secs:.1} s ({:.1} faces/s)",
        inputs.len(),
        readable_inputs,
        faces_scored as f64 / secs
    );
    if readable_inputs == 0 {
        bail!("none of the inputs could be read (see the error records)");
    }
    Ok(())
}

fn emit(out: &mut dyn Write, format: Format, r: &Record) -> Result<()> {
    match format {
        Format::Jsonl => writeln!(out, "{}", serde_json::to_string(r)?)?,
        Format::Table => {
            let frame = r.frame.map_or("-".into(), |f| f.to_string());
            let face = r.face_index.map_or("-".into(), |f| f.to_string());
            let p = r.p_fake.map_or("-".into(), |p| format!("{p:.4}"));
            let note = match (&r.error, r.video_frames) {
                (Some(e), _) => e.clone(),
                (None, Some(n)) => format!("video: mean of {n} faces"),
                _ => String::new(),
            };
            writeln!(out, "{:<48} {frame:>6} {face:>4} {p:>8}  {note}", r.file)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_colours_run_blue_to_red() {
        let (lo, hi) = (heat_colour(0.0), heat_colour(1.0));
        assert!(lo[2] > lo[0] && hi[0] > hi[2]);
    }

    #[test]
    fn heatmap_is_hot_where_attention_is() {
        let crop = RgbImage::from_pixel(32, 32, image::Rgb([0, 0, 0]));
        let mut map = vec![0.0f32; 4];
        map[3] = 1.0; // bottom-right patch of a 2x2 grid
        let pic = heatmap_picture(&crop, &map);
        let (tl, br) = (pic.get_pixel(2, 2).0, pic.get_pixel(29, 29).0);
        assert!(br[0] > tl[0] && tl[2] > br[2], "{tl:?} {br:?}");
    }

    #[test]
    fn normalise_is_chw_with_mean_std() {
        let mut crop = RgbImage::new(2, 1);
        crop.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        let ms = fsvfm_data::MeanStd {
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        let x = normalise(&crop, &ms);
        assert_eq!(x, vec![-1.0, 1.0, -1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn table_rows_show_errors_and_video_summaries() {
        let mut buf = Vec::new();
        emit(
            &mut buf,
            Format::Table,
            &Record::error("a.jpg", None, "no face detected".into()),
        )
        .unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.starts_with("a.jpg") && s.trim_end().ends_with("no face detected"));
    }
}

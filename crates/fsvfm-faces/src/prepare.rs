//! `fsvfm prepare`: raw photos and videos → face crops, region maps, landmarks and a JSONL
//! manifest, with every skipped input and its reason (ARCHITECTURE.md data flow, first arrow).
//!
//! Output folder (the official pre-training layout plus our manifest, so `fsvfm pretrain --data
//! DIR` and `--data DIR/manifest.jsonl` both work):
//! - `images/NAME.png`: the 224×224 FSFM crop;
//! - `parsing_maps/NAME.png`: its LaPa label map (8-bit PNG, same size);
//! - `landmarks/NAME.npy`: the 468 FaceMesh points `[468, 3]` float32 in crop pixels;
//! - `overlays/NAME.png` (on request): crop + map + landmarks, to check maps by eye;
//! - `manifest.jsonl`: one [`Record`] per face; `skipped.jsonl`: one [`SkipRecord`] per input
//!   (or video frame) that gave no face, and why; `prepare_config.json`: the settings.
//!
//! `NAME` is the input's path relative to the input root with `/` → `__` (plus `_face{k}` for
//! extra faces, and `_frame_{i}` for video frames: the video id convention of `fsvfm eval`).
//!
//! Runs in parallel over inputs; a bad file is recorded, never fatal. Every output file is
//! written to a temporary name and renamed, and an input's manifest lines are appended only after
//! its files exist, so a killed run leaves no half-written record. Re-running with the same output
//! skips every input already in `manifest.jsonl` or `skipped.jsonl` (delete an input's lines
//! there to redo it). Byte-identical inputs are processed once; the copies are recorded as
//! duplicates (this drops, for example, the NBA package's repeated placeholder silhouette).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use fsvfm_data::manifest::Label;

use crate::FaceError;
use crate::pipeline::{Face, FacePipeline, overlay};
use crate::video::{FrameSelection, frame_indices, is_video_file, read_frames};

/// One face crop in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Manifest schema version ([`fsvfm_data::manifest::SCHEMA_VERSION`]; 1 when absent).
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// The crop, relative to the output folder.
    pub path: String,
    /// SHA-256 of the crop PNG.
    pub sha256: String,
    /// The region map, relative to the output folder.
    pub region_map: String,
    /// The landmarks `.npy`, relative to the output folder.
    pub landmarks: String,
    /// The input file.
    pub source: String,
    /// SHA-256 of the input file.
    pub source_sha256: String,
    /// Dataset name, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dataset: Option<String>,
    /// Split (`train`/`val`/`test`), when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub split: Option<String>,
    /// `real`, `fake` or `attack`, when given (absent = real).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub label: Option<Label>,
    /// The video the frame came from (its NAME), for video inputs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub video_id: Option<String>,
    /// Frame index in the video, for video inputs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frame_index: Option<usize>,
    /// Which face of the image (0 = the largest).
    pub face_index: usize,
    /// Detector box `[x0, y0, x1, y1]` in source pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Crop rectangle `[x0, y0, x1, y1]` in source pixels (FSFM's unrotated square).
    pub crop_box: [u32; 4],
    /// Rotation of an aligned crop in degrees (clockwise on screen); 0 for FSFM's crops.
    #[serde(default)]
    pub rotation_deg: f32,
    /// Detector score.
    pub score: f32,
    /// FaceMesh presence probability.
    pub presence: f32,
    /// `short` or `full` (BlazeFace range).
    pub detector: String,
}

fn schema_v1() -> u32 {
    1
}

/// An input (or video frame) that produced no crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkipRecord {
    /// The input file.
    pub source: String,
    /// The frame, for video inputs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frame_index: Option<usize>,
    /// Why: `no face detected`, `unreadable image: …`, `unreadable video: …`, `duplicate of …`.
    pub reason: String,
}

/// Settings of a prepare run (besides the pipeline's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// Frames to take from each video.
    #[serde(with = "frames_serde")]
    pub frames: FrameSelection,
    /// `real`, `fake` or `attack` for every record.
    pub label: Option<Label>,
    /// Dataset name for every record.
    pub dataset: Option<String>,
    /// Split for every record.
    pub split: Option<String>,
    /// Also write `overlays/NAME.png`.
    pub overlays: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            frames: FrameSelection::Uniform(32),
            label: None,
            dataset: None,
            split: None,
            overlays: false,
        }
    }
}

mod frames_serde {
    use super::FrameSelection;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &FrameSelection, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&match f {
            FrameSelection::Uniform(k) => format!("uniform:{k}"),
            FrameSelection::Every(n) => format!("every:{n}"),
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FrameSelection, D::Error> {
        let s = String::deserialize(d)?;
        let parse = |v: &str| v.parse::<usize>().map_err(serde::de::Error::custom);
        match s.split_once(':') {
            Some(("uniform", v)) => Ok(FrameSelection::Uniform(parse(v)?)),
            Some(("every", v)) => Ok(FrameSelection::Every(parse(v)?)),
            _ => Err(serde::de::Error::custom(format!("bad frame selection {s}"))),
        }
    }
}

/// Counts of a prepare run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Inputs listed.
    pub inputs: usize,
    /// Inputs already done by an earlier run (not redone).
    pub already_done: usize,
    /// Image inputs processed now.
    pub images: usize,
    /// Video inputs processed now.
    pub videos: usize,
    /// Faces written now.
    pub faces: usize,
    /// Inputs or frames skipped now (see `skipped.jsonl`).
    pub skipped: usize,
}

/// One input with its output name.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The file.
    pub path: PathBuf,
    /// Its output NAME (module docs).
    pub name: String,
}

/// Lists the inputs under `input`: a folder (recursively, images and videos, sorted), one image or
/// video file, or a list file (`.txt`/`.lst`: one path per line, relative to the list's folder;
/// `#` comments). Names are relative to the folder (or the list's folder).
pub fn list_inputs(input: &Path) -> Result<Vec<Input>, FaceError> {
    let is_media = |p: &Path| fsvfm_data::image_io::is_image_file(p) || is_video_file(p);
    if input.is_dir() {
        let files = fsvfm_data::input::walk_files(input, is_media).map_err(FaceError::Input)?;
        return Ok(files
            .into_iter()
            .map(|p| Input {
                name: name_for(p.strip_prefix(input).unwrap_or(&p)),
                path: p,
            })
            .collect());
    }
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("txt" | "lst")) {
        let text =
            fsvfm_data::input::read_text(input).map_err(|e| FaceError::Input(e.to_string()))?;
        let base = input.parent().unwrap_or(Path::new("."));
        let paths: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| base.join(l))
            .collect();
        // Names relative to the folder all entries share, so absolute entries give short names.
        let mut common: Option<PathBuf> = None;
        for p in &paths {
            let parent = p.parent().unwrap_or(Path::new("")).to_path_buf();
            common = Some(match common {
                None => parent,
                Some(c) => c
                    .components()
                    .zip(parent.components())
                    .take_while(|(a, b)| a == b)
                    .map(|(a, _)| a)
                    .collect(),
            });
        }
        let common = common.unwrap_or_default();
        return Ok(paths
            .into_iter()
            .map(|p| Input {
                name: name_for(p.strip_prefix(&common).unwrap_or(&p)),
                path: p,
            })
            .collect());
    }
    if !input.is_file() {
        return Err(FaceError::Input(format!(
            "{}: no such file or folder",
            input.display()
        )));
    }
    if !is_media(input) {
        return Err(FaceError::Input(format!(
            "{}: not an image (png/jpg/jpeg/webp), a video ({}) or a list (.txt/.lst)",
            input.display(),
            crate::video::VIDEO_EXTENSIONS.join("/")
        )));
    }
    Ok(vec![Input {
        name: name_for(Path::new(input.file_name().unwrap_or_default())),
        path: input.to_path_buf(),
    }])
}

/// The longest NAME (bytes): room for the longest suffix (`_face9_frame_00000.png`) and a
/// temporary's `.NAME….tmpPID` within the 255-byte file-name limit.
const MAX_NAME: usize = 180;

/// NAME of a relative path: extension dropped, separators → `__`, other unsafe characters → `_`;
/// a name over [`MAX_NAME`] bytes keeps its head and ends in a hash of the whole.
fn name_for(rel: &Path) -> String {
    let name = safe_name(rel);
    // ASCII after `safe_name`, so the cut is a character boundary.
    String::from_utf8_lossy(&fsvfm_data::outdir::bounded_name(name.as_bytes(), MAX_NAME))
        .into_owned()
}

fn safe_name(rel: &Path) -> String {
    let stem = rel.with_extension("");
    let joined = stem
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .filter(|c| c != "." && c != "..")
        .collect::<Vec<_>>()
        .join("__");
    fsvfm_data::outdir::safe_file_part(&joined).unwrap_or_else(|| "_".into())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` atomically ([`fsvfm_data::write_atomic`]; not synced: a kill, not a
/// power cut, is what a prepare run must survive).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FaceError> {
    fsvfm_data::write_atomic(path, bytes, false).map_err(|e| FaceError::io(path, e))
}

fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, FaceError> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| FaceError::Input(format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// Sources already recorded in `manifest.jsonl` / `skipped.jsonl` of `out`.
fn done_sources(out: &Path) -> Result<HashSet<String>, FaceError> {
    let mut done = HashSet::new();
    for file in ["manifest.jsonl", "skipped.jsonl"] {
        let p = out.join(file);
        let text = match fsvfm_data::input::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FaceError::io(&p, e)),
        };
        for line in text.lines() {
            // A line cut by a kill mid-write is not JSON: its input is redone.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(s) = v["source"].as_str()
            {
                done.insert(s.to_string());
            }
        }
    }
    Ok(done)
}

/// The per-run writer: appends whole inputs' lines under a lock.
struct Sink {
    manifest: std::fs::File,
    skipped: std::fs::File,
}

/// What one input produced.
#[derive(Default)]
struct Outcome {
    records: Vec<Record>,
    skips: Vec<SkipRecord>,
    video: bool,
}

/// Runs the pipeline over `inputs`, writing into `out` (module docs). `progress` is called once
/// per input finished (or found already done).
pub fn prepare(
    pipeline: &FacePipeline,
    inputs: &[Input],
    out: &Path,
    opts: &PrepareOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<Summary, FaceError> {
    // One writer per folder: two runs would interleave their manifest lines.
    let _lock = fsvfm_data::outdir::lock_dir(out, "fsvfm prepare")
        .map_err(|e| FaceError::Input(e.to_string()))?;
    for sub in ["images", "parsing_maps", "landmarks"] {
        let d = out.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| FaceError::io(&d, e))?;
    }
    if opts.overlays {
        let d = out.join("overlays");
        std::fs::create_dir_all(&d).map_err(|e| FaceError::io(&d, e))?;
    }
    let config = serde_json::json!({"prepare": opts, "pipeline": pipeline.options});
    write_atomic(
        &out.join("prepare_config.json"),
        serde_json::to_string_pretty(&config)
            .expect("serialisable")
            .as_bytes(),
    )?;
    let done = done_sources(out)?;
    let open = |name: &str| {
        let p = out.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| FaceError::io(&p, e))
    };
    let sink = Mutex::new(Sink {
        manifest: open("manifest.jsonl")?,
        skipped: open("skipped.jsonl")?,
    });
    let mut summary = Summary {
        inputs: inputs.len(),
        ..Summary::default()
    };
    let todo: Vec<&Input> = inputs
        .iter()
        .filter(|i| {
            let d = done.contains(&i.path.display().to_string());
            if d {
                progress();
            }
            !d
        })
        .collect();
    summary.already_done = inputs.len() - todo.len();
    // Duplicate names (a.png and a.jpg in one folder) would overwrite each other: suffix them.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let names: Vec<String> = todo
        .iter()
        .map(|i| {
            let n = seen.entry(i.name.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                i.name.clone()
            } else {
                format!("{}_{}", i.name, *n - 1)
            }
        })
        .collect();
    // Hash every input first so byte-identical copies are decided in listing order.
    let hashes: Vec<Result<String, String>> = todo
        .par_iter()
        .map(|i| {
            let kind = if is_video_file(&i.path) {
                fsvfm_data::input::Kind::Video
            } else {
                fsvfm_data::input::Kind::Image
            };
            // Streamed: a video is hashed without holding it in memory.
            let (mut file, _) = fsvfm_data::input::open_bounded(&i.path, kind)
                .map_err(|e| format!("unreadable file: {}", e.reason()))?;
            let mut h = Sha256::new();
            std::io::copy(&mut file, &mut h).map_err(|e| format!("unreadable file: {e}"))?;
            Ok(hex(&h.finalize()))
        })
        .collect();
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let outcomes: Vec<Result<Outcome, FaceError>> = (0..todo.len())
        .map(|k| {
            let dup = match &hashes[k] {
                Ok(h) => first_of.get(h.as_str()).copied().map(Some),
                Err(_) => Some(None),
            };
            if let Ok(h) = &hashes[k] {
                first_of.entry(h.as_str()).or_insert(k);
            }
            (k, dup)
        })
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(k, dup)| {
            let input = todo[k];
            let source = input.path.display().to_string();
            let skip = |reason: String| SkipRecord {
                source: source.clone(),
                frame_index: None,
                reason,
            };
            let outcome = match (dup, &hashes[k]) {
                (_, Err(e)) => Ok(Outcome {
                    skips: vec![skip(e.clone())],
                    ..Outcome::default()
                }),
                (Some(Some(first)), _) => Ok(Outcome {
                    skips: vec![skip(format!(
                        "duplicate of {} (same SHA-256)",
                        todo[first].path.display()
                    ))],
                    ..Outcome::default()
                }),
                (_, Ok(sha)) => process_input(pipeline, input, &names[k], sha, out, opts),
            };
            if let Ok(o) = &outcome {
                let mut s = sink.lock().expect("sink lock");
                let mut text = String::new();
                for r in &o.records {
                    text += &serde_json::to_string(r).expect("serialisable");
                    text.push('\n');
                }
                let mut sk = String::new();
                for r in &o.skips {
                    sk += &serde_json::to_string(r).expect("serialisable");
                    sk.push('\n');
                }
                let res = s
                    .manifest
                    .write_all(text.as_bytes())
                    .and_then(|_| s.manifest.flush())
                    .and_then(|_| s.skipped.write_all(sk.as_bytes()))
                    .and_then(|_| s.skipped.flush());
                if let Err(e) = res {
                    return Err(FaceError::io(&out.join("manifest.jsonl"), e));
                }
            }
            progress();
            outcome
        })
        .collect();
    for o in outcomes {
        let o = o?;
        if o.video {
            summary.videos += 1;
        } else {
            summary.images += 1;
        }
        summary.faces += o.records.len();
        summary.skipped += o.skips.len();
    }
    Ok(summary)
}

/// One input: an image (decoded from its bytes) or a video (frames through FFmpeg). Errors are
/// only for output-side failures (disk); input problems become skip records.
fn process_input(
    pipeline: &FacePipeline,
    input: &Input,
    name: &str,
    sha: &str,
    out: &Path,
    opts: &PrepareOptions,
) -> Result<Outcome, FaceError> {
    let source = input.path.display().to_string();
    let mut o = Outcome::default();
    let skip = |frame_index: Option<usize>, reason: String| SkipRecord {
        source: source.clone(),
        frame_index,
        reason,
    };
    if is_video_file(&input.path) {
        o.video = true;
        let n = match crate::video::frame_count(&input.path) {
            Ok(n) => n,
            Err(FaceError::Input(msg)) => {
                o.skips.push(skip(None, strip_source(&msg, &source)));
                return Ok(o);
            }
            Err(e) => return Err(e),
        };
        let wanted = frame_indices(n, opts.frames);
        let frames = match read_frames(&input.path, &wanted) {
            Ok(f) => f,
            Err(FaceError::Input(msg)) => {
                o.skips.push(skip(None, strip_source(&msg, &source)));
                return Ok(o);
            }
            Err(e) => return Err(e),
        };
        let got: HashSet<usize> = frames.iter().map(|(i, _)| *i).collect();
        for &i in wanted.iter().filter(|i| !got.contains(i)) {
            o.skips
                .push(skip(Some(i), "frame could not be decoded".into()));
        }
        for (i, frame) in frames {
            let fname = format!("{name}_frame_{i:05}");
            match pipeline.process(&frame)? {
                Ok(faces) => {
                    for (k, f) in faces.iter().enumerate() {
                        let mut r = write_face(f, k, &fname, out, opts)?;
                        r.source = source.clone();
                        r.source_sha256 = sha.to_string();
                        r.video_id = Some(name.to_string());
                        r.frame_index = Some(i);
                        o.records.push(r);
                    }
                }
                Err(why) => o.skips.push(skip(Some(i), why.to_string())),
            }
        }
        return Ok(o);
    }
    let img = match fsvfm_data::input::read_image(&input.path) {
        Ok(img) => img,
        Err(e) => {
            o.skips
                .push(skip(None, format!("unreadable image: {}", e.reason())));
            return Ok(o);
        }
    };
    match pipeline.process(&img)? {
        Ok(faces) => {
            for (k, f) in faces.iter().enumerate() {
                let mut r = write_face(f, k, name, out, opts)?;
                r.source = source.clone();
                r.source_sha256 = sha.to_string();
                o.records.push(r);
            }
        }
        Err(why) => o.skips.push(skip(None, why.to_string())),
    }
    Ok(o)
}

fn strip_source(msg: &str, source: &str) -> String {
    msg.strip_prefix(source)
        .map(|m| m.trim_start_matches(": ").to_string())
        .unwrap_or_else(|| msg.to_string())
}

/// Writes one face's files and returns its record (source fields left for the caller).
fn write_face(
    face: &Face,
    k: usize,
    name: &str,
    out: &Path,
    opts: &PrepareOptions,
) -> Result<Record, FaceError> {
    let name = if k == 0 {
        name.to_string()
    } else {
        format!("{name}_face{k}")
    };
    let image_rel = format!("images/{name}.png");
    let map_rel = format!("parsing_maps/{name}.png");
    let marks_rel = format!("landmarks/{name}.npy");
    let crop_png = png_bytes(&face.crop)?;
    write_atomic(&out.join(&image_rel), &crop_png)?;
    let map_png = face
        .regions
        .to_png_bytes()
        .map_err(|e| FaceError::Input(format!("label map PNG: {e}")))?;
    write_atomic(&out.join(&map_rel), &map_png)?;
    let flat: Vec<f32> = face.landmarks.iter().flatten().copied().collect();
    let bytes: Vec<u8> = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomic(
        &out.join(&marks_rel),
        &fsvfm_data::npy::encode("<f4", &[face.landmarks.len(), 3], &bytes),
    )?;
    if opts.overlays {
        write_atomic(
            &out.join(format!("overlays/{name}.png")),
            &png_bytes(&overlay(face))?,
        )?;
    }
    let b = face.detection.bbox;
    let c = face.crop_rect;
    Ok(Record {
        schema: fsvfm_data::manifest::SCHEMA_VERSION,
        path: image_rel,
        sha256: hex(&Sha256::digest(&crop_png)),
        region_map: map_rel,
        landmarks: marks_rel,
        source: String::new(),
        source_sha256: String::new(),
        dataset: opts.dataset.clone(),
        split: opts.split.clone(),
        label: opts.label,
        video_id: None,
        frame_index: None,
        face_index: k,
        bbox: [b.x0, b.y0, b.x1, b.y1],
        crop_box: [c.x0, c.y0, c.x1, c.y1],
        rotation_deg: face.frame.rotation.to_degrees(),
        score: face.detection.score,
        presence: face.presence,
        detector: match face.range {
            crate::blazeface::Range::Short => "short".into(),
            crate::blazeface::Range::Full => "full".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_flatten_folders_and_drop_extensions() {
        assert_eq!(name_for(Path::new("a/b c/img.01.jpg")), "a__b_c__img.01");
        assert_eq!(name_for(Path::new("./x.png")), "x");
        // A 250-character name (or a deep path) stays short enough for every output and
        // temporary built on it; two such names differing only at the end stay distinct.
        let long = |c: char| format!("{}/{}{c}.jpg", "d".repeat(120), "n".repeat(250));
        let (a, b) = (
            name_for(Path::new(&long('a'))),
            name_for(Path::new(&long('b'))),
        );
        assert_eq!(a.len(), MAX_NAME);
        assert_ne!(a, b);
        assert!(a.starts_with("ddd") && a.contains('~'), "{a}");
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join(format!("{a}_face9_frame_00000.png"));
        write_atomic(&out, b"x").unwrap();
        assert!(out.exists());
    }

    #[test]
    fn listing_follows_links_once_and_ends_on_cycles() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("face.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(".", d.path().join("a")).unwrap();
        std::os::unix::fs::symlink(".", d.path().join("b")).unwrap();
        let names: Vec<String> = list_inputs(d.path())
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["face"]);
    }

    #[test]
    fn listing_a_folder_finds_images_and_videos_sorted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        for f in ["b.png", "sub/a.jpg", "v.mp4", "notes.txt"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let names: Vec<String> = list_inputs(d.path())
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["b", "sub__a", "v"]);
        // A list file: paths relative to its folder, comments and blanks ignored.
        let list = d.path().join("list.txt");
        std::fs::write(&list, "# faces\nsub/a.jpg\n\nv.mp4\n").unwrap();
        let l = list_inputs(&list).unwrap();
        assert_eq!(l[0].path, d.path().join("sub/a.jpg"));
        assert_eq!((l[0].name.as_str(), l[1].name.as_str()), ("sub__a", "v"));
        assert_eq!(l.len(), 2);
        // Absolute entries are named relative to the folder they share.
        let abs = d.path().join("abs.txt");
        let line = |f: &str| d.path().join(f).display().to_string();
        std::fs::write(&abs, format!("{}\n{}\n", line("sub/a.jpg"), line("b.png"))).unwrap();
        let names: Vec<String> = list_inputs(&abs)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["sub__a", "b"]);
        let err = list_inputs(&d.path().join("notes.txt.bak")).unwrap_err();
        assert!(err.to_string().contains("no such file"));
    }

    #[test]
    fn frame_selection_round_trips_through_the_config() {
        let o = PrepareOptions {
            frames: FrameSelection::Every(5),
            ..PrepareOptions::default()
        };
        let s = serde_json::to_string(&o).unwrap();
        assert!(s.contains("every:5"));
        let back: PrepareOptions = serde_json::from_str(&s).unwrap();
        assert_eq!(back.frames, FrameSelection::Every(5));
    }
}

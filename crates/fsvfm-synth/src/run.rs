//! `fsvfm synth`: forgeries from a prepared manifest (the output of `fsvfm prepare`), with masks
//! and provenance.
//!
//! Output folder: `images/NAME_KIND_K.png`, `masks/NAME_KIND_K.png` (8-bit, 255 = manipulated),
//! `manifest.jsonl` (one [`SynthRecord`] per output: `path, mask, label, kind, source, identities,
//! dataset, split, seed, k, params`) and `skipped.jsonl`. Swap donors are drawn from the **same
//! split** and a different identity (the input's `source` photo), and every record lists the
//! identities it contains, so a split by identity stays clean.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use fsvfm_data::manifest::Label;

use crate::{Draw, Img, SynthError, attack, mask_to_gray, sbi, swap};

/// What to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Self-blended image.
    Sbi,
    /// Landmark face swap with another identity.
    Swap,
    /// Print attack.
    Print,
    /// Replay (screen) attack.
    Replay,
}

impl Kind {
    /// Its name in file names and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sbi => "sbi",
            Kind::Swap => "swap",
            Kind::Print => "print",
            Kind::Replay => "replay",
        }
    }

    fn code(self) -> u64 {
        self as u64 + 1
    }

    /// `fake` for forgeries, `attack` for presentation attacks (both label 1).
    pub fn label(self) -> Label {
        match self {
            Kind::Sbi | Kind::Swap => Label::Fake,
            Kind::Print | Kind::Replay => Label::Attack,
        }
    }
}

fn schema_v1() -> u32 {
    1
}

/// One real face of the input manifest.
#[derive(Debug, Clone)]
pub struct Face {
    /// The crop.
    pub image: PathBuf,
    /// Its landmarks `.npy` (`[468, ≥2]`, crop pixels).
    pub landmarks: PathBuf,
    /// The identity (the original photo or video it came from).
    pub identity: String,
    /// Split, when given.
    pub split: Option<String>,
    /// Dataset, when given.
    pub dataset: Option<String>,
    /// Output name stem.
    pub name: String,
}

/// One synthesised output in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthRecord {
    /// Manifest schema version ([`fsvfm_data::manifest::SCHEMA_VERSION`]; 1 when absent).
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// The image, relative to the output folder.
    pub path: String,
    /// Its mask, relative to the output folder.
    pub mask: String,
    /// `fake` or `attack`.
    pub label: Label,
    /// `sbi`, `swap`, `print` or `replay`.
    pub kind: String,
    /// The real crop it was made from (the target, for swaps).
    pub source: String,
    /// The swap donor's crop.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub donor: Option<String>,
    /// Every identity whose face is in the image.
    pub identities: Vec<String>,
    /// Dataset of the source.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dataset: Option<String>,
    /// Split of the source (and donor).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub split: Option<String>,
    /// The run's seed.
    pub seed: u64,
    /// Which output of this source (`0..per_image`).
    pub k: usize,
    /// The drawn parameters.
    pub params: serde_json::Value,
}

/// An input that gave no output, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSkip {
    /// The manifest line or image.
    pub source: String,
    /// Why.
    pub reason: String,
}

/// Reads the real faces of a `fsvfm prepare` manifest, sorted by image path (records labelled
/// fake/attack, or without landmarks, are reported as skipped).
pub fn read_faces(manifest: &Path) -> Result<(Vec<Face>, Vec<SynthSkip>), SynthError> {
    let lines = fsvfm_data::manifest::read_manifest(manifest)
        .map_err(|e| SynthError::Input(e.to_string()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let (mut faces, mut skips) = (Vec::new(), Vec::new());
    for l in lines {
        let skip = |reason: &str| SynthSkip {
            source: format!("{}:{}", manifest.display(), l.line),
            reason: reason.into(),
        };
        let r = match &l.record {
            Ok(r) => r,
            Err(why) => {
                skips.push(skip(why));
                continue;
            }
        };
        if r.label() != Label::Real {
            skips.push(skip("not a real face"));
            continue;
        }
        let Some(marks) = &r.landmarks else {
            skips.push(skip(
                "no \"path\" or \"landmarks\" (a `fsvfm prepare` manifest is needed)",
            ));
            continue;
        };
        let name = Path::new(&r.path)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        faces.push(Face {
            image: base.join(&r.path),
            landmarks: base.join(marks),
            identity: r.source.clone().unwrap_or_else(|| r.path.clone()),
            split: r.split.clone(),
            dataset: r.dataset.clone(),
            name,
        });
    }
    // `fsvfm prepare` appends records in completion order, which varies between runs: sort, so
    // the seed alone decides every draw (each face's stream is keyed on its index here, and swap
    // donors are drawn from this order).
    faces.sort_by(|a, b| a.image.cmp(&b.image));
    Ok((faces, skips))
}

/// Loads a face's image and its 468 landmarks `(x, y)`.
fn load(face: &Face) -> Result<(Img, Vec<(f32, f32)>), String> {
    let img = fsvfm_data::input::read_image(&face.image)
        .map_err(|e| format!("unreadable image {}: {}", face.image.display(), e.reason()))?;
    let arr = fsvfm_data::npy::read_f32(&face.landmarks).map_err(|e| e.to_string())?;
    if arr.shape.len() != 2 || arr.shape[0] != 468 || arr.shape[1] < 2 {
        return Err(format!(
            "{}: landmarks of shape {:?}, expected [468, 2 or 3]",
            face.landmarks.display(),
            arr.shape
        ));
    }
    let cols = arr.shape[1];
    let pts = arr.data.chunks(cols).map(|p| (p[0], p[1])).collect();
    Ok((Img::from_rgb(&img), pts))
}

/// Counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SynthSummary {
    /// Real faces read.
    pub inputs: usize,
    /// Images written.
    pub outputs: usize,
    /// Inputs (or outputs) skipped.
    pub skipped: usize,
}

/// Encodes `img` as PNG and writes it atomically ([`fsvfm_data::write_atomic`], not synced).
fn write_png<P, C>(path: &Path, img: &image::ImageBuffer<P, C>) -> Result<(), SynthError>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| SynthError::Input(format!("{}: {e}", path.display())))?;
    fsvfm_data::write_atomic(path, &bytes, false).map_err(|e| SynthError::io(path, e))
}

/// Makes `per_image` outputs of `kind` for every face of `manifest` into `out` (module docs).
/// `progress` is called once per source face finished, with the number of source faces.
pub fn synth(
    manifest: &Path,
    out: &Path,
    kind: Kind,
    per_image: usize,
    seed: u64,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<SynthSummary, SynthError> {
    let (faces, mut skips) = read_faces(manifest)?;
    let _lock = fsvfm_data::outdir::lock_dir(out, "fsvfm synth")
        .map_err(|e| SynthError::Input(e.to_string()))?;
    for sub in ["images", "masks"] {
        let d = out.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| SynthError::io(&d, e))?;
    }
    let results: Vec<Result<Outputs, SynthError>> = faces
        .par_iter()
        .enumerate()
        .map(|(idx, face)| {
            let r = one_face(&faces, idx, face, out, kind, per_image, seed);
            progress(faces.len());
            r
        })
        .collect();
    let mut records = Vec::new();
    for r in results {
        let (rec, sk) = r?;
        records.extend(rec);
        skips.extend(sk);
    }
    let lines = |v: Vec<String>| v.into_iter().map(|l| l + "\n").collect::<String>();
    for (name, text) in [
        (
            "manifest.jsonl",
            lines(
                records
                    .iter()
                    .map(|r| serde_json::to_string(r).expect("json"))
                    .collect(),
            ),
        ),
        (
            "skipped.jsonl",
            lines(
                skips
                    .iter()
                    .map(|r| serde_json::to_string(r).expect("json"))
                    .collect(),
            ),
        ),
    ] {
        let p = out.join(name);
        fsvfm_data::write_atomic(&p, text.as_bytes(), false).map_err(|e| SynthError::io(&p, e))?;
    }
    Ok(SynthSummary {
        inputs: faces.len(),
        outputs: records.len(),
        skipped: skips.len(),
    })
}

/// The records and skips of one source face.
type Outputs = (Vec<SynthRecord>, Vec<SynthSkip>);

fn one_face(
    faces: &[Face],
    idx: usize,
    face: &Face,
    out: &Path,
    kind: Kind,
    per_image: usize,
    seed: u64,
) -> Result<Outputs, SynthError> {
    let skip = |reason: String| SynthSkip {
        source: face.image.display().to_string(),
        reason,
    };
    let (img, marks) = match load(face) {
        Ok(v) => v,
        Err(e) => return Ok((Vec::new(), vec![skip(e)])),
    };
    // Swap donors: same split, another identity.
    let donors: Vec<usize> = (0..faces.len())
        .filter(|&j| faces[j].identity != face.identity && faces[j].split == face.split)
        .collect();
    if kind == Kind::Swap && donors.is_empty() {
        return Ok((
            Vec::new(),
            vec![skip(
                "no donor of another identity in the same split".into(),
            )],
        ));
    }
    let (mut recs, mut skips) = (Vec::new(), Vec::new());
    for k in 0..per_image {
        let mut d = Draw::new(seed, kind.code(), idx as u64, k as u64);
        let (image, mask, params, donor) = match kind {
            Kind::Sbi => {
                let b = sbi::self_blend(&img, &marks, &mut d);
                (b.image, b.mask, b.params, None)
            }
            Kind::Swap => {
                let j = donors[d.below(donors.len())];
                let (dimg, dmarks) = match load(&faces[j]) {
                    Ok(v) => v,
                    Err(e) => {
                        skips.push(skip(format!("donor: {e}")));
                        continue;
                    }
                };
                if (dimg.w, dimg.h) != (img.w, img.h) {
                    skips.push(skip("donor crop of another size".into()));
                    continue;
                }
                let s = swap::face_swap(&img, &marks, &dimg, &dmarks, &mut d);
                (s.image, s.mask, s.params, Some(j))
            }
            Kind::Print | Kind::Replay => {
                let a = if kind == Kind::Print {
                    attack::print_attack(&img, &mut d)
                } else {
                    attack::replay_attack(&img, &mut d)
                };
                (a.image, vec![1.0; img.w * img.h], a.params, None)
            }
        };
        let stem = format!("{}_{}_{k}", face.name, kind.name());
        let (ip, mp) = (format!("images/{stem}.png"), format!("masks/{stem}.png"));
        let rgb = image.to_rgb();
        write_png(&out.join(&ip), &rgb)?;
        write_png(&out.join(&mp), &mask_to_gray(&mask, img.w, img.h))?;
        let mut identities = vec![face.identity.clone()];
        if let Some(j) = donor {
            identities.push(faces[j].identity.clone());
        }
        recs.push(SynthRecord {
            path: ip,
            mask: mp,
            schema: fsvfm_data::manifest::SCHEMA_VERSION,
            label: kind.label(),
            kind: kind.name().into(),
            source: face.image.display().to_string(),
            donor: donor.map(|j| faces[j].image.display().to_string()),
            identities,
            dataset: face.dataset.clone(),
            split: face.split.clone(),
            seed,
            k,
            params,
        });
    }
    Ok((recs, skips))
}

//! The parsers under test, each with its seeds (our committed fixtures, or files our own writers
//! produce) and the public entry point a command or the library calls on a user's file.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fsvfm_model::{LoadMode, VisionTransformer, VitConfig, WeightFile};

use crate::mutate::Rng;

/// A structure-aware mutation of a seed: the case, or `None` when the seed does not have the
/// structure.
pub type Structured = fn(&[u8], &mut Rng) -> Option<Vec<u8>>;

/// One parser: how to seed it and how to call it.
pub struct Target {
    /// Name (corpus folder, `--target`).
    pub name: &'static str,
    /// What is parsed, and through which entry point.
    pub about: &'static str,
    /// The seed files, `(name, bytes)`; every one must be accepted.
    pub seeds: fn() -> Vec<(String, Vec<u8>)>,
    /// Parses one case, written to a file in the scratch folder where the entry point takes a
    /// path: `Ok` when accepted, `Err(message)` with the typed error's text when refused.
    pub run: fn(&[u8], &Path) -> Result<(), String>,
    /// Bytes one case may allocate at its peak, given its length.
    pub budget: fn(usize) -> usize,
    /// A repair applied to half the mutated cases so they pass checksums (PNG chunk CRCs) and
    /// reach the parser behind them.
    pub fixup: Option<fn(&mut [u8])>,
    /// A structure-aware mutation tried for a third of the cases (a `.pth` archive's members
    /// mutated and re-zipped with valid CRCs); `None` from it falls back to byte mutation.
    pub structured: Option<Structured>,
}

const MIB: usize = 1 << 20;

/// Pixel limit of the image targets (the service and the CLI use their configured limit; the
/// bound on memory is what is checked).
pub const MAX_PIXELS: u64 = 1 << 20;

fn small(len: usize) -> usize {
    64 * MIB + 16 * len
}

fn images(_len: usize) -> usize {
    // decode_checked's decoder limit (4 bytes a pixel + 64 MiB), the RGB copy, and slack.
    MAX_PIXELS as usize * 7 + 96 * MIB
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> (String, Vec<u8>) {
    let p = repo().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()));
    (rel.rsplit('/').next().unwrap_or(rel).to_string(), bytes)
}

fn file(scratch: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let p = scratch.join(name);
    std::fs::write(&p, bytes).map_err(|e| format!("harness: cannot write {}: {e}", p.display()))?;
    Ok(p)
}

fn text<E: std::fmt::Display>(r: Result<impl Sized, E>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

/// Every target, in the order campaigns run them.
pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "npy",
            about: "NumPy .npy arrays: fsvfm_data::npy::{parse_f32, parse_int}",
            seeds: npy_seeds,
            run: |b, _| {
                let f = fsvfm_data::npy::parse_f32(b);
                let i = fsvfm_data::npy::parse_int(b);
                match (f, i) {
                    (Ok(_), _) | (_, Ok(_)) => Ok(()),
                    (Err(e), _) => Err(e),
                }
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "safetensors",
            about: "safetensors weights: WeightFile::open + load_into (strict) and read_f32_safetensors",
            seeds: || {
                vec![fixture(
                    "crates/fsvfm-model/tests/fixtures/classifier_avg.safetensors",
                )]
            },
            run: |b, dir| {
                let p = file(dir, "case.safetensors", b)?;
                let loaded = load_vit(&p, "classifier_avg");
                let plain = fsvfm_data::tensors::read_f32_safetensors(&p);
                match (loaded, plain) {
                    (Ok(()), _) => Ok(()),
                    (Err(e), Ok(_)) => Err(e),
                    (Err(e), Err(f)) => Err(format!("{e}; {f}")),
                }
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "pth",
            about: "PyTorch .pth (zip + pickle; fp32, and fp16 through the re-packer): WeightFile::open + load_into (strict)",
            seeds: || {
                vec![
                    fixture("crates/fsvfm-model/tests/fixtures/classifier_token_fp16.pth"),
                    fixture("crates/fsvfm-model/tests/fixtures/classifier_avg.pth"),
                ]
            },
            run: |b, dir| {
                let p = file(dir, "case.pth", b)?;
                load_vit(&p, "classifier_token").or_else(|token| {
                    load_vit(&p, "classifier_avg").map_err(|avg| format!("{token}; {avg}"))
                })
            },
            budget: small,
            fixup: None,
            structured: Some(rezip_mutated),
        },
        Target {
            name: "image",
            about: "PNG, JPEG and WebP: fsvfm_data::input::decode_image (format, header, truncation, decoder limits)",
            seeds: image_seeds,
            run: |b, _| text(fsvfm_data::input::decode_image(b, MAX_PIXELS)),
            budget: images,
            fixup: Some(fix_png_crcs),
            structured: None,
        },
        Target {
            name: "region_map",
            about: "LaPa region maps (PNG or .npy): LabelMap::from_{png,npy}_bytes + PatchRegions::from_label_map",
            seeds: region_map_seeds,
            run: |b, _| {
                use fsvfm_masking::{LabelMap, PatchGrid, PatchRegions};
                let map = if b.starts_with(b"\x93NUMPY") {
                    LabelMap::from_npy_bytes(b)
                } else {
                    LabelMap::from_png_bytes(b)
                }
                .map_err(|e| e.to_string())?;
                let grid = PatchGrid::new(14, 14).map_err(|e| e.to_string())?;
                text(PatchRegions::from_label_map(&map, grid))
            },
            budget: |len| small(len) + 2 * fsvfm_masking::MAX_MAP_PIXELS as usize + 64 * MIB,
            fixup: Some(fix_png_crcs),
            structured: None,
        },
        Target {
            name: "probe",
            about: "ffprobe output (JSON stream header, packet count): fsvfm_faces::video::{parse_probe, parse_packet_count}",
            seeds: || {
                vec![
                    fixture("crates/fsvfm-faces/tests/fixtures/ffprobe_stream.json"),
                    ("count.csv".into(), b"50,\n".to_vec()),
                ]
            },
            run: |b, _| {
                let count = fsvfm_faces::video::parse_packet_count(b);
                match (fsvfm_faces::video::parse_probe(b), count) {
                    (Ok(_), _) | (_, Some(_)) => Ok(()),
                    (Err(e), None) => Err(e.to_string()),
                }
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "manifest",
            about: "manifest.jsonl: fsvfm_data::manifest::read_records",
            seeds: || vec![("manifest.jsonl".into(), MANIFEST.as_bytes().to_vec())],
            run: |b, dir| {
                let p = file(dir, "manifest.jsonl", b)?;
                let (records, skipped) = fsvfm_data::manifest::read_records(&p)?;
                if records.is_empty() {
                    return Err(format!("no records; {} skipped", skipped.len()));
                }
                Ok(())
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "scores_csv",
            about: "score CSV: fsvfm_eval::read_scores (with and without a video column)",
            seeds: || vec![("scores.csv".into(), SCORES.as_bytes().to_vec())],
            run: |b, _| {
                let plain = fsvfm_eval::read_scores(Cursor::new(b), None);
                let videos = fsvfm_eval::read_scores(Cursor::new(b), Some("video"));
                match (plain, videos) {
                    (Ok(_), _) => Ok(()),
                    (Err(e), _) => Err(e.to_string()),
                }
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "pretrain_recipe",
            about: "pre-training recipe TOML: PretrainRecipe::load (file) + validate",
            seeds: || {
                fsvfm_train::RECIPES
                    .iter()
                    .filter_map(|n| fsvfm_train::PretrainRecipe::preset(n))
                    .map(|r| (format!("{}.toml", r.name), r.to_toml().into_bytes()))
                    .collect()
            },
            run: |b, dir| {
                let p = file(dir, "recipe.toml", b)?;
                let r = fsvfm_train::PretrainRecipe::load(&p.to_string_lossy())
                    .map_err(|e| e.to_string())?;
                r.validate()
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "transfer_recipe",
            about: "transfer recipe TOML: TransferRecipe::load (file) for fine-tuning and the adapter + validate",
            seeds: || {
                use fsvfm_train::transfer_recipe::{Method, TRANSFER_RECIPES, TransferRecipe};
                let mut out = Vec::new();
                for task in TRANSFER_RECIPES {
                    for m in [Method::Finetune, Method::Adapter] {
                        if let Some(r) = TransferRecipe::preset(task, m, 768) {
                            out.push((format!("{task}-{m:?}.toml"), r.to_toml().into_bytes()));
                        }
                    }
                }
                out
            },
            run: |b, dir| {
                use fsvfm_train::transfer_recipe::{Method, TransferRecipe};
                let p = file(dir, "recipe.toml", b)?;
                let name = p.to_string_lossy().into_owned();
                let mut last = String::new();
                for m in [Method::Finetune, Method::Adapter] {
                    match TransferRecipe::load(&name, m, 768) {
                        Ok(r) => match r.validate() {
                            Ok(()) => return Ok(()),
                            Err(e) => last = e,
                        },
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(last)
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "sidecar",
            about: "checkpoint sidecar fsvfm.json: fsvfm_train::sidecar::Sidecar::read_in",
            seeds: sidecar_seeds,
            run: |b, dir| {
                file(dir, fsvfm_train::sidecar::SIDECAR_FILE, b)?;
                match fsvfm_train::sidecar::Sidecar::read_in(dir) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("harness: sidecar not found".into()),
                    Err(e) => Err(e.to_string()),
                }
            },
            budget: small,
            fixup: None,
            structured: None,
        },
        Target {
            name: "legacy_sidecars",
            about: "the first release's model.json and state.json: fsvfm_train::sidecar::Legacy::read",
            seeds: legacy_seeds,
            run: |b, dir| {
                // One case is either file; the other is absent.
                let (name, other) = if b.windows(10).any(|w| w == b"next_epoch") {
                    ("state.json", "model.json")
                } else {
                    ("model.json", "state.json")
                };
                let _ = std::fs::remove_file(dir.join(other));
                file(dir, name, b)?;
                let l = fsvfm_train::sidecar::Legacy::read(dir).map_err(|e| e.to_string())?;
                match l.model {
                    Some(m) => m.validate().map_err(|e| e.to_string()),
                    None => Err("no model config read".into()),
                }
            },
            budget: small,
            fixup: None,
            structured: None,
        },
    ]
}

/// The tiny ViT configs of the model fixtures (`reference.json`, exported by
/// `tools/reference/export_fixtures.py`).
fn fixture_config(case: &str) -> VitConfig {
    static REF: OnceLock<serde_json::Value> = OnceLock::new();
    let r = REF.get_or_init(|| {
        let (_, bytes) = fixture("crates/fsvfm-model/tests/fixtures/reference.json");
        serde_json::from_slice(&bytes).expect("reference.json")
    });
    serde_json::from_value(r["cases"][case]["config"].clone()).expect("fixture config")
}

/// Opens the weight file and loads it strictly into the ViT its fixture was exported from.
fn load_vit(path: &Path, case: &str) -> Result<(), String> {
    let wf = WeightFile::open(path).map_err(|e| e.to_string())?;
    let model = VisionTransformer::new(&fixture_config(case), &fsvfm_model::cpu_device());
    text(wf.load_into(model, LoadMode::Strict))
}

fn npy_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = ["resize_bicubic_20x17.npy", "crop_resize_bilinear.npy"]
        .iter()
        .map(|n| fixture(&format!("crates/fsvfm-data/tests/fixtures/augment/{n}")))
        .collect();
    // Integer dtypes as the official parsing maps are stored (int8 [1, H, W]).
    let labels: Vec<u8> = (0..64).map(|i| (i % 11) as u8).collect();
    out.push((
        "map_i1.npy".into(),
        fsvfm_data::npy::encode("|i1", &[1, 8, 8], &labels),
    ));
    out
}

fn image_seeds() -> Vec<(String, Vec<u8>)> {
    let (name, jpeg) = fixture("crates/fsvfm-faces/tests/fixtures/astronaut.jpg");
    let face = image::load_from_memory(&jpeg)
        .expect("astronaut.jpg")
        .to_rgb8();
    let small = image::imageops::thumbnail(&face, 48, 48);
    let mut out = vec![(name, jpeg)];
    for (ext, format) in [
        ("png", image::ImageFormat::Png),
        ("jpg", image::ImageFormat::Jpeg),
        ("webp", image::ImageFormat::WebP),
    ] {
        let mut bytes = Vec::new();
        small
            .write_to(&mut Cursor::new(&mut bytes), format)
            .expect("encode seed");
        out.push((format!("astronaut48.{ext}"), bytes));
    }
    out
}

fn region_map_seeds() -> Vec<(String, Vec<u8>)> {
    // A face-like layout: background, skin, eyes and mouth rows (LaPa ids 0..=10).
    let map = fsvfm_masking::LabelMap::from_fn(56, 56, |r, c| match (r / 8, c / 8) {
        (0, _) | (_, 0) | (_, 6) => 0,
        (2, 2) => 4,
        (2, 4) => 5,
        (5, 3) => 8,
        _ => 1,
    })
    .expect("seed map");
    let png = map.to_png_bytes().expect("encode map");
    let labels: Vec<u8> = map.labels().to_vec();
    vec![
        ("map.png".into(), png),
        (
            "map.npy".into(),
            fsvfm_data::npy::encode("|u1", &[1, 56, 56], &labels),
        ),
    ]
}

fn sidecar_seeds() -> Vec<(String, Vec<u8>)> {
    use fsvfm_train::sidecar::{ModelKind, ProducedBy, Sidecar};
    [ModelKind::Finetune, ModelKind::Adapter, ModelKind::Fas]
        .into_iter()
        .map(|kind| {
            let s = Sidecar::classifier(
                kind,
                "model.safetensors",
                &fixture_config("classifier_avg"),
                fsvfm_data::image_io::MeanStd::VGGFACE2,
                ProducedBy {
                    command: "finetune".into(),
                    settings: serde_json::json!({"epochs": 1}),
                },
            );
            (
                format!("{kind:?}.json"),
                serde_json::to_vec_pretty(&s).expect("sidecar json"),
            )
        })
        .collect()
}

fn legacy_seeds() -> Vec<(String, Vec<u8>)> {
    let model = serde_json::to_vec_pretty(&fixture_config("classifier_token")).expect("json");
    let recipe = fsvfm_train::PretrainRecipe::preset("tiny").expect("tiny recipe");
    let state = fsvfm_train::checkpoint::TrainState {
        next_epoch: 3,
        iteration: 120,
        nonfinite_batches: 0,
        best_loss: Some(0.5),
        recipe,
        mean_std: fsvfm_data::image_io::MeanStd::VGGFACE2,
    };
    vec![
        ("model.json".into(), model),
        (
            "state.json".into(),
            serde_json::to_vec_pretty(&state).expect("json"),
        ),
    ]
}

/// Lines as `fsvfm prepare` and `fsvfm synth` write them.
const MANIFEST: &str = r#"{"schema":1,"path":"faces/a.png","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","region_map":"maps/a.png","landmarks":"landmarks/a.npy","source":"in/a.jpg","source_sha256":"60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752","label":"real","face_index":0,"box":[12.5,20.0,180.25,210.0],"crop_box":[0,0,224,224],"rotation_deg":-3.5,"score":0.98,"presence":0.99}
{"schema":1,"path":"faces/b_f000012_0.png","region_map":"maps/b.png","landmarks":"landmarks/b.npy","source":"in/b.mp4","label":"fake","video_id":"b","frame_index":12,"dataset":"ff++","split":"test"}

{"path":"synth/c.png","label":"fake","mask":"synth/c_mask.png","source":"faces/a.png"}
"#;

/// An `eval-scores` CSV as `fsvfm eval` writes it.
const SCORES: &str = "path,label,score,video\n\
    faces/a.png,0,0.1250,a\n\
    faces/b_0.png,1,0.9375,b\n\
    faces/b_1.png,1,0.8000,b\n\
    faces/c.png,0,0.40,c\n";

/// Recomputes every PNG chunk's CRC, so a mutated header reaches the decoder behind the check.
pub fn fix_png_crcs(b: &mut [u8]) {
    if !b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return;
    }
    let mut i = 8;
    while i + 12 <= b.len() {
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let Some(end) = (i + 8).checked_add(len).filter(|&e| e + 4 <= b.len()) else {
            return;
        };
        // CRC-32 (IEEE), as the png and zip crates compute it.
        let crc = crc32fast::hash(&b[i + 4..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        i = end + 4;
    }
}

/// A zip archive's members, `(name, bytes)`, or `None` when it is not one.
fn unzip(archive: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut z = zip::ZipArchive::new(Cursor::new(archive)).ok()?;
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).ok()?;
            let mut data = Vec::new();
            f.read_to_end(&mut data).ok()?;
            Some((f.name().ok()?.to_string(), data))
        })
        .collect()
}

/// A stored (uncompressed), 64-byte-aligned archive as `torch.save` writes one.
fn rezip(members: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    for (name, data) in members {
        w.start_file(name.as_str(), opts).ok()?;
        w.write_all(data).ok()?;
    }
    w.finish().ok().map(Cursor::into_inner)
}

/// A `.pth` archive with one member (the pickle more often than a tensor's storage) mutated and
/// the archive re-written with valid CRCs and headers, so the mutation reaches the unpickler or
/// the tensor reader rather than the zip checks.
fn rezip_mutated(seed: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut members = unzip(seed).filter(|m| !m.is_empty())?;
    let pickle = members.iter().position(|(n, _)| n.ends_with("data.pkl"));
    let which = match pickle {
        Some(p) if rng.below(3) > 0 => p,
        _ => rng.below(members.len()),
    };
    let data = &mut members[which].1;
    *data = crate::mutate::mutate(data, &[], rng, data.len() * 2 + 64);
    rezip(&members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_crc_repair_matches_the_encoder() {
        let (_, png) = &region_map_seeds()[0];
        let mut broken = png.clone();
        // Corrupt every CRC (the last four bytes of each chunk) and repair them.
        fix_png_crcs(&mut broken);
        assert_eq!(&broken, png, "repairing a valid PNG changes nothing");
        let iend_crc = broken.len() - 4;
        broken[iend_crc] ^= 0xff;
        assert_ne!(&broken, png);
        fix_png_crcs(&mut broken);
        assert_eq!(&broken, png);
    }

    #[test]
    fn rezipped_pth_without_mutation_loads() {
        // The re-zip path with a mutation that changes nothing must give a loadable archive,
        // or the structured cases would all be refused by the zip reader.
        let (_, seed) = fixture("crates/fsvfm-model/tests/fixtures/classifier_avg.pth");
        let bytes = rezip(&unzip(&seed).unwrap()).unwrap();
        assert_ne!(bytes, seed, "re-written, not copied");
        let dir = tempfile::tempdir().unwrap();
        load_vit(
            &file(dir.path(), "r.pth", &bytes).unwrap(),
            "classifier_avg",
        )
        .unwrap();
    }
}

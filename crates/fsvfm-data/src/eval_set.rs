//! Labelled test sets for `fsvfm eval`: an ImageFolder tree, a JSONL manifest or a DeepfakeBench
//! dataset JSON. Labels follow our convention: **1 = fake (or attack), 0 = real**.
//!
//! - ImageFolder: class folders whose names start with `real` (0) or `fake` (1), e.g. `real/`,
//!   `fake_four/` (the official FSFM layout); images anywhere below them. The video id of a frame
//!   is its file name before `_frame_` (the FSFM/CADDM convention), else the folder it sits in
//!   below the class folder, else none.
//! - Manifest: one JSON object per line with `path`, `label` (`"real"`/`"fake"`/`"attack"` or
//!   0/1) and optionally `video_id`; paths relative to the manifest's folder.
//! - DeepfakeBench: `{dataset: {label_subset: {split: {compression: {video: {"label", "frames"}}}}}}`;
//!   a label containing `real` is 0, anything else 1; frames relative to `root` when given.
//! - FSFM/FLIP face anti-spoofing split files (`data/MCIO/txt/{name}_{fake|real}_{train|test|shot}.txt`,
//!   one frame path per line, relative to `data/MCIO/frame/`): either file of a pair names the
//!   pair; both are read. As the official `sample_frames`, the `test` split also takes each
//!   listed `frame0` file's `frame1` twin, without duplicates. Frames are relative to `root` when
//!   given, else to the `frame/` folder beside the `txt/` folder. The video id is the path without
//!   its `frame0.png`/`frame1.png` ending (the official grouping).

use std::path::{Path, PathBuf};

use crate::image_io::{is_image_file, sorted_entries};
use crate::manifest::{Label, read_records};
use crate::pretrain_set::Skipped;

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalSample {
    /// The image file.
    pub image: PathBuf,
    /// 1 = fake/attack, 0 = real.
    pub label: u8,
    /// Video id, for video-level metrics.
    pub video: Option<String>,
}

/// A class folder's binary label ([`Label::parse`]: 0 = real, 1 = fake or attack).
fn label_of(name: &str) -> Option<u8> {
    Label::parse(name).map(Label::binary)
}

/// Reads a test set; `split` selects the DeepfakeBench split (`test` by default there), `root`
/// prefixes its relative frame paths.
pub fn read_eval_set(
    path: &Path,
    split: &str,
    root: Option<&Path>,
) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    if path.is_dir() {
        return image_folder(path);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => manifest(path),
        Some("json") => deepfakebench(path, split, root),
        Some("txt") if fas_split_name(path).is_some() => fas_split(path, root),
        _ => Err(format!(
            "{}: expected an ImageFolder (real*/ and fake*/ folders), a .jsonl manifest, a DeepfakeBench .json \
             or an FSFM anti-spoofing split file NAME_{{fake|real}}_{{train|test|shot}}.txt",
            path.display()
        )),
    }
}

/// `(name, split)` of an FSFM/FLIP anti-spoofing split file `NAME_{fake|real}_SPLIT.txt`.
fn fas_split_name(path: &Path) -> Option<(String, String)> {
    let stem = path.file_stem()?.to_str()?;
    let (rest, split) = stem.rsplit_once('_')?;
    let (name, kind) = rest.rsplit_once('_')?;
    matches!(kind, "fake" | "real").then(|| (name.to_string(), split.to_string()))
}

/// For an FSFM/FLIP split file (`NAME_{fake|real}_SPLIT.txt`), its sibling of `split`
/// (`NAME_fake_<split>.txt`); any other path unchanged (ImageFolders and manifests choose by
/// their own split field, or hold one split).
pub fn with_split(path: &Path, split: &str) -> std::path::PathBuf {
    match fas_split_name(path) {
        Some((name, _)) if path.extension().is_some_and(|e| e == "txt") => {
            path.with_file_name(format!("{name}_fake_{split}.txt"))
        }
        _ => path.to_path_buf(),
    }
}

fn fas_split(path: &Path, root: Option<&Path>) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    let (name, split) = fas_split_name(path).expect("checked by the caller");
    let txt_dir = path.parent().unwrap_or(Path::new("."));
    let frames = match root {
        Some(r) => r.to_path_buf(),
        None => txt_dir.parent().unwrap_or(Path::new(".")).join("frame"),
    };
    let (mut samples, mut skipped) = (Vec::new(), Vec::new());
    for (kind, label) in [("fake", 1u8), ("real", 0u8)] {
        let file = txt_dir.join(format!("{name}_{kind}_{split}.txt"));
        let text = crate::input::read_text(&file)?;
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut rels = vec![line.to_string()];
            if split == "test" {
                rels.push(line.replace("frame0", "frame1"));
            }
            for rel in rels {
                if !seen.insert(rel.clone()) {
                    continue;
                }
                let image = frames.join(&rel);
                if !image.is_file() {
                    skipped.push(Skipped {
                        path: image.display().to_string(),
                        reason: format!("listed in {} but missing", file.display()),
                    });
                    continue;
                }
                let video = rel.replace("frame0.png", "").replace("frame1.png", "");
                samples.push(EvalSample {
                    image,
                    label,
                    video: Some(video),
                });
            }
        }
    }
    Ok((samples, skipped))
}

fn image_folder(dir: &Path) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    let classes: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    let (mut samples, mut skipped) = (Vec::new(), Vec::new());
    for class in classes {
        let name = class
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some(label) = label_of(&name) else {
            skipped.push(Skipped {
                path: class.display().to_string(),
                reason: "folder name starts with neither real nor fake: not a class".into(),
            });
            continue;
        };
        for image in crate::input::walk_files(&class, is_image_file)? {
            let stem = image
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let video = match stem.find("_frame_") {
                Some(i) => Some(format!("{name}/{}", &stem[..i])),
                None => image
                    .parent()
                    .filter(|p| *p != class)
                    .and_then(|p| p.strip_prefix(dir).ok())
                    .map(|p| p.to_string_lossy().to_string()),
            };
            samples.push(EvalSample {
                image,
                label,
                video,
            });
        }
    }
    if samples.is_empty() {
        return Err(format!(
            "{}: no images under real*/ or fake*/ folders",
            dir.display()
        ));
    }
    Ok((samples, skipped))
}

fn json_label(v: &serde_json::Value) -> Option<u8> {
    Label::from_json(v).map(Label::binary)
}

/// A manifest ([`crate::manifest`]): every labelled record, 1 for fake and attack.
fn manifest(path: &Path) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    let base = path.parent().unwrap_or(Path::new("."));
    let (records, mut skipped) = read_records(path)?;
    let mut samples = Vec::new();
    for (line, r) in records {
        // A test set says what each image is: an unlabelled record is not taken for real.
        match r.label {
            Some(label) => samples.push(EvalSample {
                image: base.join(&r.path),
                label: label.binary(),
                video: r.video_id,
            }),
            None => {
                skipped.push(line.skipped(path, "no \"label\" (real, fake or attack; or 0 / 1)"))
            }
        }
    }
    Ok((samples, skipped))
}

fn deepfakebench(
    path: &Path,
    split: &str,
    root: Option<&Path>,
) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    let text = crate::input::read_text(path)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let obj = |v: &serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let mut samples = Vec::new();
    for (_, subsets) in obj(&v) {
        for (subset, splits) in obj(&subsets) {
            let Some(comps) = splits.get(split) else {
                continue;
            };
            for (_, videos) in obj(comps) {
                for (video, rec) in obj(&videos) {
                    let label_src = rec
                        .get("label")
                        .cloned()
                        .unwrap_or(serde_json::Value::String(subset.clone()));
                    let label = match &label_src {
                        serde_json::Value::String(s) => {
                            u8::from(!s.to_ascii_lowercase().contains("real"))
                        }
                        other => json_label(other).unwrap_or(1),
                    };
                    for f in rec["frames"].as_array().cloned().unwrap_or_default() {
                        if let Some(f) = f.as_str() {
                            let image = match root {
                                Some(r) => r.join(f),
                                None => PathBuf::from(f),
                            };
                            samples.push(EvalSample {
                                image,
                                label,
                                video: Some(format!("{subset}/{video}")),
                            });
                        }
                    }
                }
            }
        }
    }
    if samples.is_empty() {
        return Err(format!("{}: no frames in split '{split}'", path.display()));
    }
    Ok((samples, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn fas_split_files_read_both_labels_and_the_frame1_twins_of_the_test_split() {
        let d = tempfile::tempdir().unwrap();
        let (txt, frame) = (d.path().join("MCIO/txt"), d.path().join("MCIO/frame"));
        for v in ["casia/test/fake/v1", "casia/test/real/v2"] {
            std::fs::create_dir_all(frame.join(v)).unwrap();
            for f in ["frame0.png", "frame1.png"] {
                image::RgbImage::new(2, 2)
                    .save(frame.join(v).join(f))
                    .unwrap();
            }
        }
        std::fs::create_dir_all(&txt).unwrap();
        std::fs::write(
            txt.join("casia_fake_test.txt"),
            "casia/test/fake/v1/frame0.png\ncasia/test/fake/v9/frame0.png\n",
        )
        .unwrap();
        std::fs::write(
            txt.join("casia_real_test.txt"),
            "casia/test/real/v2/frame0.png\n",
        )
        .unwrap();
        let (s, k) = read_eval_set(&txt.join("casia_real_test.txt"), "test", None).unwrap();
        // v1: frame0 + frame1 (fake); v2: frame0 + frame1 (real); v9 is listed but missing.
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|x| x.label == 1).count(), 2);
        assert_eq!(s[0].video.as_deref(), Some("casia/test/fake/v1/"));
        assert_eq!(s[0].video, s[1].video);
        assert_eq!(k.len(), 2, "{k:?}");
        assert!(k[0].reason.contains("missing"));
        assert!(read_eval_set(&txt.join("notes.txt"), "test", None).is_err());
        // The sibling of another split, for split-file domains; other paths stay as they are.
        assert_eq!(
            with_split(&txt.join("casia_real_test.txt"), "train"),
            txt.join("casia_fake_train.txt")
        );
        assert_eq!(
            with_split(&txt.join("my_set_fake_train.txt"), "test"),
            txt.join("my_set_fake_test.txt")
        );
        assert_eq!(with_split(d.path(), "train"), d.path());
    }

    #[test]
    fn image_folder_labels_and_video_ids() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("real/id0_frame_3.png"));
        touch(&d.path().join("fake_four/vid7/000.jpg"));
        touch(&d.path().join("fake_four/single.png"));
        touch(&d.path().join("other/x.png"));
        touch(&d.path().join("real/notes.txt"));
        let (s, k) = read_eval_set(d.path(), "test", None).unwrap();
        let got: Vec<(String, u8, Option<String>)> = s
            .iter()
            .map(|s| {
                (
                    s.image.file_name().unwrap().to_string_lossy().to_string(),
                    s.label,
                    s.video.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("single.png".into(), 1, None),
                ("000.jpg".into(), 1, Some("fake_four/vid7".into())),
                ("id0_frame_3.png".into(), 0, Some("real/id0".into())),
            ]
        );
        assert_eq!(k.len(), 1);
        assert!(k[0].reason.contains("neither real nor fake"));
    }

    #[test]
    fn manifest_and_deepfakebench() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("t.jsonl");
        std::fs::write(&m, "{\"path\":\"a.png\",\"label\":\"fake\",\"video_id\":\"v\"}\n{\"path\":\"b.png\",\"label\":0}\n{\"path\":\"c.png\"}\n").unwrap();
        let (s, k) = read_eval_set(&m, "test", None).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].label, s[0].video.as_deref()), (1, Some("v")));
        assert_eq!((s[1].label, s[1].video.as_deref()), (0, None));
        assert!(k[0].reason.contains("label"));
        let j = d.path().join("dfb.json");
        std::fs::write(
            &j,
            r#"{"Celeb-DF-v2": {"CelebDFv2_real": {"test": {"c23": {"id0_0000": {"label": "CelebDFv2_real", "frames": ["f/0.png", "f/1.png"]}}}, "train": {}},
                               "CelebDFv2_fake": {"test": {"c23": {"id0_id1_0000": {"label": "CelebDFv2_fake", "frames": ["g/0.png"]}}}}}}"#,
        )
        .unwrap();
        let (s, _) = read_eval_set(&j, "test", Some(Path::new("/data"))).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().filter(|x| x.label == 0).count(), 2);
        assert!(s.iter().all(|x| x.image.starts_with("/data")));
        assert!(read_eval_set(&j, "val", None).is_err());
    }
}

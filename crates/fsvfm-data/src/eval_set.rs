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

use std::path::{Path, PathBuf};

use crate::image_io::{is_image_file, sorted_entries};
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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = sorted_entries(dir)?;
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_image_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn label_of(name: &str) -> Option<u8> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("real") {
        Some(0)
    } else if n.starts_with("fake") || n.starts_with("attack") || n.starts_with("spoof") {
        Some(1)
    } else {
        None
    }
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
        _ => Err(format!(
            "{}: expected an ImageFolder (real*/ and fake*/ folders), a .jsonl manifest or a DeepfakeBench .json",
            path.display()
        )),
    }
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
        let mut files = Vec::new();
        walk(&class, &mut files)?;
        for image in files {
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
    match v {
        serde_json::Value::String(s) => label_of(s),
        serde_json::Value::Number(n) => n.as_u64().filter(|&x| x <= 1).map(|x| x as u8),
        _ => None,
    }
}

fn manifest(path: &Path) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (mut samples, mut skipped) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        let rec = parsed.map_err(|e| format!("not JSON: {e}")).and_then(|v| {
            let image = v["path"].as_str().ok_or("no \"path\"")?;
            let label = json_label(&v["label"]).ok_or("no usable \"label\" (real/fake or 0/1)")?;
            let video = v["video_id"].as_str().map(String::from);
            Ok(EvalSample {
                image: base.join(image),
                label,
                video,
            })
        });
        match rec {
            Ok(s) => samples.push(s),
            Err(reason) => skipped.push(Skipped {
                path: at,
                reason: reason.to_string(),
            }),
        }
    }
    Ok((samples, skipped))
}

fn deepfakebench(
    path: &Path,
    split: &str,
    root: Option<&Path>,
) -> Result<(Vec<EvalSample>, Vec<Skipped>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
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

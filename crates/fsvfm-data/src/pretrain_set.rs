//! The pre-training dataset: face crops with their facial-region (parsing) maps, from the
//! official folder layout or a JSONL manifest, and its per-channel mean/std (spec §4).
//!
//! Official layout: `DIR/images/NAME.png` with `DIR/parsing_maps/NAME.npy` (int8 `[1, 224, 224]`;
//! an 8-bit PNG label map works too). Manifest: one JSON object per line with the image under
//! `path` and its map under `region_map` (paths relative to the manifest's folder); records with
//! any label but real (`fake`, `attack`, `spoof`, `print`, `replay`, `1`; see [`crate::manifest`])
//! are left out, since pre-training sees real faces only.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::image_io::{MeanStd, is_image_file, load_rgb, sorted_entries};

/// One face crop and its region map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PretrainSample {
    /// The image file.
    pub image: PathBuf,
    /// Its label map (`.npy` or `.png`).
    pub parsing: PathBuf,
}

/// An input left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The file or manifest line.
    pub path: String,
    /// Why it was left out.
    pub reason: String,
}

/// Lists the samples under `path` (a folder in the official layout, or a `.jsonl` manifest), in a
/// stable (sorted) order, with every input that had to be left out.
pub fn discover(path: &Path) -> Result<(Vec<PretrainSample>, Vec<Skipped>), String> {
    if path.is_dir() {
        discover_folder(path)
    } else if path.extension().is_some_and(|e| e == "jsonl") {
        read_manifest(path)
    } else {
        Err(format!(
            "{}: expected a folder with images/ and parsing_maps/, or a .jsonl manifest",
            path.display()
        ))
    }
}

fn discover_folder(dir: &Path) -> Result<(Vec<PretrainSample>, Vec<Skipped>), String> {
    let images = dir.join("images");
    let maps = dir.join("parsing_maps");
    if !images.is_dir() || !maps.is_dir() {
        return Err(format!(
            "{}: expected the official layout, images/ and parsing_maps/ side by side \
             (run `fsvfm prepare` on raw photos first)",
            dir.display()
        ));
    }
    let files: Vec<PathBuf> = sorted_entries(&images)?
        .into_iter()
        .filter(|p| p.is_file() && is_image_file(p))
        .collect();
    let (mut samples, mut skipped) = (Vec::new(), Vec::new());
    for image in files {
        let stem = image
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let parsing = ["npy", "png"]
            .iter()
            .map(|ext| maps.join(format!("{stem}.{ext}")))
            .find(|p| p.is_file());
        match parsing {
            Some(parsing) => samples.push(PretrainSample { image, parsing }),
            None => skipped.push(Skipped {
                path: image.display().to_string(),
                reason: format!(
                    "no parsing map {stem}.npy or {stem}.png in {}",
                    maps.display()
                ),
            }),
        }
    }
    Ok((samples, skipped))
}

/// The real records of a manifest ([`crate::manifest`]); fake and attack records (spoof,
/// print, replay included) are reported as skipped, as are records without a region map.
fn read_manifest(path: &Path) -> Result<(Vec<PretrainSample>, Vec<Skipped>), String> {
    let base = path.parent().unwrap_or(Path::new("."));
    let (mut samples, mut skipped) = (Vec::new(), Vec::new());
    for l in crate::manifest::read_manifest(path)? {
        let r = match &l.record {
            Ok(r) => r,
            Err(why) => {
                skipped.push(l.skipped(path, why.clone()));
                continue;
            }
        };
        let label = r.label();
        if label != crate::manifest::Label::Real {
            skipped.push(l.skipped(
                path,
                format!("labelled {label}: pre-training uses real faces only"),
            ));
            continue;
        }
        match &r.region_map {
            Some(map) => samples.push(PretrainSample {
                image: base.join(&r.path),
                parsing: base.join(map),
            }),
            None => skipped.push(l.skipped(path, "no \"region_map\"")),
        }
    }
    // `prepare` appends lines as its parallel workers finish: sorted, a run does not depend on
    // that order (the same faces give the same batches).
    samples.sort_by(|a, b| a.image.cmp(&b.image));
    Ok((samples, skipped))
}

/// Per-channel mean and (population) standard deviation of the images resized to `size`, over
/// every pixel of every image, decoding in parallel; images that fail to decode are returned as
/// skipped (with their index in `samples`) instead of counted.
pub fn mean_std(
    samples: &[PretrainSample],
    size: usize,
) -> (Option<MeanStd>, Vec<(usize, Skipped)>) {
    let per: Vec<Result<[f64; 6], String>> = samples
        .par_iter()
        .map(|s| {
            let x = load_rgb(&s.image, size)?;
            let plane = size * size;
            let mut acc = [0.0f64; 6];
            for c in 0..3 {
                for &v in &x[c * plane..(c + 1) * plane] {
                    acc[c] += v as f64;
                    acc[3 + c] += (v as f64) * (v as f64);
                }
            }
            Ok(acc)
        })
        .collect();
    let (mut sum, mut count, mut bad) = ([0.0f64; 6], 0usize, Vec::new());
    for (i, r) in per.into_iter().enumerate() {
        match r {
            Ok(a) => {
                for k in 0..6 {
                    sum[k] += a[k];
                }
                count += 1;
            }
            Err(reason) => bad.push((
                i,
                Skipped {
                    path: samples[i].image.display().to_string(),
                    reason,
                },
            )),
        }
    }
    if count == 0 {
        return (None, bad);
    }
    let n = (count * size * size) as f64;
    let mut ms = MeanStd {
        mean: [0.0; 3],
        std: [0.0; 3],
    };
    for c in 0..3 {
        let mean = sum[c] / n;
        ms.mean[c] = mean as f32;
        ms.std[c] = (sum[3 + c] / n - mean * mean).max(0.0).sqrt() as f32;
    }
    (Some(ms), bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, rgb: [u8; 3]) {
        image::RgbImage::from_pixel(4, 4, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn official_layout_pairs_by_name_and_reports_the_rest() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("images")).unwrap();
        std::fs::create_dir_all(d.path().join("parsing_maps")).unwrap();
        png(&d.path().join("images/b.png"), [0, 0, 0]);
        png(&d.path().join("images/a.png"), [255, 255, 255]);
        png(&d.path().join("images/c.jpg"), [0, 0, 0]);
        std::fs::write(d.path().join("parsing_maps/a.npy"), b"x").unwrap();
        std::fs::write(d.path().join("parsing_maps/b.png"), b"x").unwrap();
        let (s, k) = discover(d.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert!(
            s[0].image.ends_with("images/a.png") && s[0].parsing.ends_with("parsing_maps/a.npy")
        );
        assert!(s[1].parsing.ends_with("parsing_maps/b.png"));
        assert_eq!(k.len(), 1);
        assert!(k[0].path.ends_with("c.jpg") && k[0].reason.contains("no parsing map"));
        assert!(
            discover(&d.path().join("images"))
                .unwrap_err()
                .contains("official layout")
        );
    }

    #[test]
    fn manifest_skips_fakes_and_incomplete_records() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m.jsonl");
        std::fs::write(
            &m,
            "{\"path\":\"x.png\",\"region_map\":\"x.npy\",\"label\":\"real\"}\n\
             {\"path\":\"y.png\",\"region_map\":\"y.npy\",\"label\":\"fake\"}\n\
             {\"path\":\"z.png\"}\nnot json\n\n",
        )
        .unwrap();
        let (s, k) = discover(&m).unwrap();
        assert_eq!(
            s,
            vec![PretrainSample {
                image: d.path().join("x.png"),
                parsing: d.path().join("x.npy")
            }]
        );
        assert_eq!(k.len(), 3);
        assert!(
            k[0].reason.contains("fake")
                && k[1].reason.contains("region_map")
                && k[2].reason.contains("JSON")
        );
    }

    /// Only real records are pre-trained on: fake, spoof, attack, print and replay lines are
    /// left out, each named with its line.
    #[test]
    fn manifest_of_mixed_labels_gives_only_the_real_faces() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m.jsonl");
        let line = |n: &str, l: &str| {
            format!("{{\"path\":\"{n}.png\",\"region_map\":\"{n}.npy\",\"label\":{l}}}\n")
        };
        let text = [
            line("r1", "\"real\""),
            line("f", "\"fake\""),
            line("s", "\"spoof\""),
            line("a", "\"attack\""),
            line("p", "\"print\""),
            line("v", "\"replay\""),
            line("one", "1"),
            line("r2", "0"),
            "{\"path\":\"r3.png\",\"region_map\":\"r3.npy\"}\n".into(),
        ]
        .concat();
        std::fs::write(&m, text).unwrap();
        let (s, k) = discover(&m).unwrap();
        let names: Vec<_> = s
            .iter()
            .map(|x| x.image.file_stem().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["r1", "r2", "r3"]);
        assert_eq!(k.len(), 6);
        for (skip, (line, label)) in k.iter().zip([
            (2, "fake"),
            (3, "attack"),
            (4, "attack"),
            (5, "attack"),
            (6, "attack"),
            (7, "fake"),
        ]) {
            assert!(skip.path.ends_with(&format!(":{line}")), "{skip:?}");
            assert!(
                skip.reason.contains(&format!("labelled {label}")),
                "{skip:?}"
            );
        }
    }

    /// `prepare` writes manifest lines in completion order: the samples come out sorted, so two
    /// manifests of the same faces give the same run.
    #[test]
    fn manifest_order_does_not_matter() {
        let d = tempfile::tempdir().unwrap();
        let line = |n: &str| format!("{{\"path\":\"{n}.png\",\"region_map\":\"{n}.npy\"}}\n");
        let (m1, m2) = (d.path().join("1.jsonl"), d.path().join("2.jsonl"));
        std::fs::write(&m1, line("b") + &line("a") + &line("c")).unwrap();
        std::fs::write(&m2, line("c") + &line("b") + &line("a")).unwrap();
        let (s1, _) = discover(&m1).unwrap();
        assert_eq!(s1, discover(&m2).unwrap().0);
        assert!(s1[0].image.ends_with("a.png") && s1[2].image.ends_with("c.png"));
    }

    #[test]
    fn mean_std_over_pixels_and_corrupt_images_reported() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            d.path().join("a.png"),
            d.path().join("b.png"),
            d.path().join("c.png"),
        );
        png(&a, [255, 0, 51]);
        png(&b, [0, 0, 51]);
        std::fs::write(&c, b"corrupt").unwrap();
        let s = |p: &Path| PretrainSample {
            image: p.to_path_buf(),
            parsing: p.to_path_buf(),
        };
        let (ms, bad) = mean_std(&[s(&a), s(&c), s(&b)], 4);
        let ms = ms.unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 1);
        assert!((ms.mean[0] - 0.5).abs() < 1e-6 && (ms.std[0] - 0.5).abs() < 1e-6);
        assert!(ms.mean[1].abs() < 1e-7 && ms.std[1].abs() < 1e-7);
        assert!((ms.mean[2] - 0.2).abs() < 1e-6 && ms.std[2] < 1e-6);
    }
}

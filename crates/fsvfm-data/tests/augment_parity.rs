//! The augmentations against the libraries the official code runs (fixtures from
//! `tools/reference/export_augment_fixtures.py`: Pillow, timm's RandAugment ops, OpenCV, timm
//! Mixup), replayed with the same drawn parameters.
//!
//! Tolerances: resizing, lookup-table ops and enhancers must match Pillow exactly. Warps (float
//! bilinear weights) and the OpenCV float HSV round trip end in a truncation to `u8`, so a value
//! within float rounding of an integer may land one level apart: at most 1% of values may differ,
//! by at most 1 (measured: warps 0, OpenCV 5.0's SIMD hue/sector arithmetic 1–23 of 5760 values,
//! from ULP-level differences; FSFM pins OpenCV 3.4, whose scalar code is what we port). Mixing is
//! f32 arithmetic, ≤ 1e-6.

use std::path::{Path, PathBuf};

use fsvfm_data::augment::{Filter, Mixup, RaOp, cutmix_box, cv2_saturation, resample, resize};
use image::RgbImage;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/augment")
}

fn load_rgb(name: &str) -> RgbImage {
    let bytes = std::fs::read(dir().join(format!("{name}.npy"))).unwrap();
    let a = fsvfm_data::npy::parse_int(&bytes).unwrap();
    assert_eq!(a.shape.len(), 3, "{name}");
    let px = a.values.iter().map(|&v| v as u8).collect();
    RgbImage::from_raw(a.shape[1] as u32, a.shape[0] as u32, px).unwrap()
}

fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

/// (values that differ, largest difference).
fn diff(a: &RgbImage, b: &RgbImage) -> (usize, i32) {
    assert_eq!(a.dimensions(), b.dimensions());
    a.iter().zip(b.iter()).fold((0, 0), |(n, m), (&x, &y)| {
        let d = (x as i32 - y as i32).abs();
        (n + (d > 0) as usize, m.max(d))
    })
}

fn op(name: &str) -> RaOp {
    let all = [
        "AutoContrast",
        "Equalize",
        "Invert",
        "Rotate",
        "Posterize",
        "Solarize",
        "SolarizeAdd",
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
        "ShearX",
        "ShearY",
        "TranslateXRel",
        "TranslateYRel",
    ];
    RaOp::ALL[all.iter().position(|n| *n == name).unwrap()]
}

#[test]
fn images_match_pillow_timm_and_opencv() {
    let input = load_rgb("input");
    let meta = cases();
    let fill: [u8; 3] = std::array::from_fn(|c| meta["fill"][c].as_u64().unwrap() as u8);
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in meta["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let expected = load_rgb(name);
        let filter = |c: &Value| match c["filter"].as_str().unwrap() {
            "bilinear" => Filter::Bilinear,
            _ => Filter::Bicubic,
        };
        let size = |c: &Value| {
            (
                c["size"][0].as_u64().unwrap() as u32,
                c["size"][1].as_u64().unwrap() as u32,
            )
        };
        let (got, exact) = match case["kind"].as_str().unwrap() {
            "resize" => {
                let (w, h) = size(case);
                (resize(&input, w, h, filter(case)), true)
            }
            "crop_resize" => {
                let b: Vec<u32> = case["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect();
                let (w, h) = size(case);
                (
                    resize(
                        &resample::crop(&input, b[0], b[1], b[2], b[3]),
                        w,
                        h,
                        filter(case),
                    ),
                    true,
                )
            }
            "rand_augment" => {
                let o = op(case["op"].as_str().unwrap());
                let warp = matches!(
                    o,
                    RaOp::Rotate
                        | RaOp::ShearX
                        | RaOp::ShearY
                        | RaOp::TranslateXRel
                        | RaOp::TranslateYRel
                );
                let m = case["magnitude"].as_f64().unwrap();
                (
                    o.apply(
                        &input,
                        m,
                        true,
                        case["negate"].as_bool().unwrap(),
                        0.45,
                        fill,
                    ),
                    !warp,
                )
            }
            "fas_saturation" => (
                cv2_saturation(&input, case["factor"].as_f64().unwrap() as f32),
                false,
            ),
            k => panic!("unknown case kind {k}"),
        };
        let (n, max) = diff(&got, &expected);
        let limit = if exact { 0 } else { expected.len() / 100 };
        if n > limit || (!exact && max > 1) {
            failures.push(format!(
                "{name}: {n} values differ (limit {limit}), max {max}"
            ));
        }
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mixup_and_cutmix_match_timm() {
    let meta = cases();
    let batch = fsvfm_data::npy::read_f32(dir().join("mix_batch.npy")).unwrap();
    let labels: Vec<usize> = meta["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (n, h, w) = (batch.shape[0], batch.shape[2], batch.shape[3]);
    let mixup = Mixup::default();
    for case in meta["mix"].as_array().unwrap() {
        let lam = case["lam"].as_f64().unwrap();
        let draw = if case["mode"] == "cutmix" {
            let ratio = (1.0 - lam).sqrt();
            let b = cutmix_box(
                h,
                w,
                case["cy"].as_i64().unwrap(),
                case["cx"].as_i64().unwrap(),
                (h as f64 * ratio) as i64,
                (w as f64 * ratio) as i64,
            );
            let want: Vec<usize> = case["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!([b.0, b.1, b.2, b.3].to_vec(), want, "rand_bbox");
            let area = ((b.1 - b.0) * (b.3 - b.2)) as f64 / (h * w) as f64;
            fsvfm_data::augment::MixDraw {
                lam: 1.0 - area,
                cutmix_box: Some(b),
            }
        } else {
            fsvfm_data::augment::MixDraw {
                lam,
                cutmix_box: None,
            }
        };
        let mut x = batch.data.clone();
        Mixup::mix_images(&draw, &mut x, n, h, w);
        let want = fsvfm_data::npy::read_f32(dir().join(case["file"].as_str().unwrap())).unwrap();
        let max = x
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-6, "{}: images differ by {max}", case["file"]);
        let t = mixup.targets(&labels, 2, draw.lam);
        let want_t: Vec<f64> = case["target"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        for (a, b) in t.iter().zip(&want_t) {
            assert!(
                (*a as f64 - b).abs() <= 1e-6,
                "{}: targets {t:?} vs {want_t:?}",
                case["file"]
            );
        }
    }
}

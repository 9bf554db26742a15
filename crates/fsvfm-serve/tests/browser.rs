//! The page at `/` in a real browser: headless Debian chromium driven by playwright-core
//! (`tools/browser/page_test.mjs`), started by this test against the service on loopback. It
//! picks a photo, and checks that the page shows the face boxed on the picture with the P(fake)
//! and verdict the library gives, the heat map and its toggle, and an error in words for a
//! picture without a face. The screenshot goes to `$FSVFM_SCREENSHOT` when set (the one in
//! `docs/serve_page.png` was made so), else into a temporary folder.
//!
//! Needs chromium, Node.js with `tools/browser/node_modules` (`npm ci --prefix tools/browser`)
//! and the face models; `.ci/run` installs them and sets `FSVFM_REQUIRE_BROWSER=1`, under which
//! a missing piece fails the test instead of skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fsvfm::data::MeanStd;
use fsvfm::model::VitConfig;
use fsvfm::{Detector, ModelKind, ProducedBy, Sidecar};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn required() -> bool {
    std::env::var("FSVFM_REQUIRE_BROWSER").as_deref() == Ok("1")
}

fn have(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(!required(), "{what} missing (FSVFM_REQUIRE_BROWSER=1)");
        eprintln!("skipped: {what} missing");
    }
    ok
}

#[test]
fn the_page_shows_a_scored_face_and_an_error_in_words() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let script = repo().join("tools/browser/page_test.mjs");
    if !have("chromium", Path::new(&chromium).is_file())
        || !have(
            "playwright-core (npm ci --prefix tools/browser)",
            repo()
                .join("tools/browser/node_modules/playwright-core")
                .is_dir(),
        )
        || !have(
            "node",
            Command::new("node").arg("--version").output().is_ok(),
        )
        || !have(
            "face models",
            fsvfm::faces::assets::Assets::locate().is_ok(),
        )
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("checkpoint-min_val_loss.safetensors");
    std::fs::copy(
        repo().join("crates/fsvfm-model/tests/fixtures/classifier_avg.safetensors"),
        &ck,
    )
    .unwrap();
    let mut cfg = VitConfig::new(8, 32, 2, 2);
    cfg.img_size = 32;
    Sidecar::classifier(
        ModelKind::Finetune,
        "checkpoint-min_val_loss.safetensors",
        &cfg,
        MeanStd::VGGFACE2,
        ProducedBy {
            command: "test".into(),
            settings: serde_json::Value::Null,
        },
    )
    .write(d.path())
    .unwrap();
    let photo = repo().join("crates/fsvfm-faces/tests/fixtures/astronaut.jpg");
    let want = Detector::load(&ck).unwrap().predict_file(&photo).unwrap();
    let grey = d.path().join("grey.png");
    image::RgbImage::from_pixel(240, 240, image::Rgb([90, 90, 90]))
        .save(&grey)
        .unwrap();
    let c = ck.clone();
    let server = fsvfm_serve::start(
        fsvfm_serve::ServeOptions {
            port: 0,
            ..Default::default()
        },
        move || {
            let det = Detector::load(&c).map_err(|e| e.to_string())?;
            det.ensure_face_models().map_err(|e| e.to_string())?;
            Ok((det, "checkpoint-min_val_loss.safetensors".into()))
        },
        false,
    )
    .unwrap();
    let shot = std::env::var("FSVFM_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| d.path().join("page.png"));
    let start = Instant::now();
    let o = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}/", server.addr))
        .arg(&shot)
        .arg(&photo)
        .arg(&grey)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(180));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let summary = v["summary"].as_str().unwrap();
    let p = format!("{:.4}", want[0].p_fake);
    assert!(
        summary.contains(&format!("P(fake) = {p}")),
        "{summary} vs {p}"
    );
    let verdict = fsvfm::Calibration::default()
        .verdict(f64::from(want[0].p_fake))
        .as_str();
    assert_eq!(v["verdict"], verdict, "{v}");
    assert!(summary.contains("uncalibrated"), "{summary}");
    assert_eq!(
        (v["pictures"].as_u64(), v["heatmaps"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["heatmaps_hidden"], true);
    assert!(v["model"].as_str().unwrap().contains("finetune"), "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("No face was found") && err.contains("no_face_detected"),
        "{err}"
    );
    assert_eq!(v["page_errors"], serde_json::json!([]), "{v}");
    let png = image::open(&shot).unwrap();
    assert!(png.width() >= 800 && png.height() >= 300);
    server.shutdown().unwrap();
}

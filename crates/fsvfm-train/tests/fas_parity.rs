//! The FAS classifier against `tools/reference/export_train_fixtures.py` (`fas_step`): logits of
//! both embedder norms (≤ 1e-4 abs, the model-parity tolerance), and two torch-`Adam` steps (L2
//! decay, the in-place classifier renormalisation) on the official token-axis CE: losses ≤ 1e-5
//! relative, parameters ≤ 1e-5 absolute.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::{
    FasClassifier, FasNorm, LoadMode, VisionTransformer, VitConfig, WeightFile, cpu_device,
};
use fsvfm_train::fas::FasTrainer;
use fsvfm_train::{AdamW, AdamWSettings};

mod common;
use common::{read, rel, write_stripped};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fas_step.safetensors")
}

fn model(init: &std::path::Path) -> FasClassifier {
    let mut cfg = VitConfig::new(8, 32, 2, 2);
    cfg.img_size = 32;
    cfg.num_classes = 0;
    cfg.global_pool = true;
    let device = cpu_device();
    let fresh = FasClassifier::new(
        VisionTransformer::new(&cfg, &device),
        FasNorm::TokenAxis,
        &device,
    );
    let (mut m, _) = WeightFile::open(init)
        .unwrap()
        .load_into(fresh, LoadMode::Strict)
        .unwrap();
    m.dropout = 0.0;
    m
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn fas_logits_and_two_adam_steps_match_pytorch() {
    let r = read(&fixture());
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    write_stripped(&r, "init.", &init);
    let x = r["x"].1.clone();
    let classes: Vec<usize> = r["labels"].1.iter().map(|&v| v as usize).collect();
    let device = cpu_device();
    let mut m = model(&init);
    for (norm, key) in [
        (FasNorm::TokenAxis, "logits_token_axis"),
        (FasNorm::PerSample, "logits_per_sample"),
    ] {
        m.token_axis_norm = norm == FasNorm::TokenAxis;
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [6, 3, 32, 32]), &device);
        let got: Vec<f32> = m.forward(t).into_data().try_into_vec().unwrap();
        let d = max_diff(&got, &r[key].1);
        assert!(d <= 1e-4, "{key}: max abs diff {d:e}");
    }
    let settings = AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-4,
    };
    let mut t = FasTrainer::new(model(&init), AdamW::adam(settings), &device);
    for step in 0..2 {
        let loss = t.step(&x, [6, 3, 32, 32], &classes, 1e-3);
        let want = r["losses"].1[step] as f64;
        assert!(rel(loss, want) <= 1e-5, "step {step}: {loss} vs {want}");
    }
    let out = dir.path().join("after.safetensors");
    save_safetensors(&t.model, &out).unwrap();
    let got = read(&out);
    // Adam's step is m/√v: where the L2 term cancels the gradient (g + wd·p ≈ 0) its sign, and
    // so the update (±lr), rests on float noise. Such coordinates are rare: at most 3 of the
    // ~30k values may exceed 1e-5, and none may exceed the two steps' total lr (2e-3 each way).
    let (mut total, mut off, mut worst) = (0usize, Vec::new(), 0.0f32);
    for (k, (shape, want)) in r
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("after.")?, v)))
    {
        assert_eq!(&got[k].0, shape, "{k}");
        for (i, (a, b)) in got[k].1.iter().zip(want).enumerate() {
            let d = (a - b).abs();
            total += 1;
            worst = worst.max(d);
            if d > 1e-5 {
                off.push(format!("{k}[{i}]: {a} vs {b}"));
            }
        }
    }
    assert!(total > 25_000, "{total}");
    assert!(
        off.len() <= 3,
        "{} of {total} values differ by more than 1e-5: {off:?}",
        off.len()
    );
    assert!(worst <= 4e-3, "max abs diff {worst:e}");
}

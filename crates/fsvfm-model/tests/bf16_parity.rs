//! `--precision bf16` against the PyTorch fp32 fixtures (its own test binary: the precision is
//! process-global). The blocks' linear layers run on bf16 inputs and weights with fp32
//! accumulation, so the bound is relative: max |diff| ≤ 2e-2 · max |reference| on tokens,
//! features and logits, and the predicted class of every fixture sample is the fp32 one.
//! Skipped (with a message) on CPUs without AVX-512 BF16, where bf16 falls back to fp32.

use burn::tensor::Tensor;
use fsvfm_model::cpu_kernels::{Precision, set_precision};
use fsvfm_model::{
    AdapterConfig, FsAdapterClassifier, LoadMode, VisionTransformer, VitConfig, WeightFile,
    cpu_device,
};

mod common;
use common::{Reference, fixture, max_abs_diff};

const REL: f32 = 2e-2;

/// Max |diff| relative to max |reference|, asserted ≤ [`REL`], and returned.
fn assert_rel<const D: usize>(what: &str, got: Tensor<D>, want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let rel = max_abs_diff(got, want) / scale;
    assert!(rel <= REL, "{what}: relative max diff {rel:e} > {REL:e}");
    rel
}

fn argmax_rows(v: &[f32], classes: usize) -> Vec<usize> {
    v.chunks(classes)
        .map(|r| (0..classes).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
        .collect()
}

#[test]
fn bf16_matches_the_fp32_reference_within_its_tolerance_and_labels() {
    if set_precision(Precision::Bf16) != Precision::Bf16 {
        eprintln!("skipped: no AVX-512 BF16 on this CPU (bf16 runs as fp32)");
        return;
    }
    let r = Reference::load();
    let device = cpu_device();
    let mut worst = 0f32;
    for (case, file) in [
        ("classifier_avg", "classifier_avg.safetensors"),
        ("classifier_token", "classifier_token_fp16.pth"),
    ] {
        let cfg: VitConfig = r.config(case);
        let wf = WeightFile::open(fixture(file)).unwrap();
        let (model, _) = wf
            .load_into(VisionTransformer::new(&cfg, &device), LoadMode::Strict)
            .unwrap();
        let x = r.tensor::<4>(&format!("{case}.x"), &device);
        let feats = model.forward_features(x.clone());
        let want_feats = r.values(&format!("{case}.features"));
        let rel = assert_rel(&format!("{case} features"), feats, want_feats);
        worst = worst.max(rel);
        // The bf16 path did run: fp32 agrees with the fixture to ~1e-6 relative, bf16 cannot.
        assert!(rel > 1e-5, "{case}: no bf16 rounding visible ({rel:e})");
        let logits = model.forward(x);
        let want = r.values(&format!("{case}.logits"));
        worst = worst.max(assert_rel(&format!("{case} logits"), logits.clone(), want));
        let got = logits.into_data().try_to_vec::<f32>().unwrap();
        let classes = cfg.num_classes;
        assert_eq!(
            argmax_rows(&got, classes),
            argmax_rows(want, classes),
            "{case}: predicted classes"
        );
    }
    let cfg: AdapterConfig = r.config("adapter");
    let (model, _) = WeightFile::open(fixture("adapter.safetensors"))
        .unwrap()
        .load_into(FsAdapterClassifier::new(&cfg, &device), LoadMode::Strict)
        .unwrap();
    let out = model.forward(r.tensor::<4>("adapter.x", &device));
    worst = worst.max(assert_rel(
        "adapter logits",
        out.logits.clone(),
        r.values("adapter.logits"),
    ));
    let got = out.logits.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(
        argmax_rows(&got, 2),
        argmax_rows(r.values("adapter.logits"), 2)
    );
    eprintln!("bf16 against the fp32 reference: worst relative max diff {worst:e}");

    // Frozen weights (the inference commands): the blocks' packs are made once and reused, with
    // the same result as packing per forward.
    let cfg: VitConfig = r.config("classifier_avg");
    let (model, _) = WeightFile::open(fixture("classifier_avg.safetensors"))
        .unwrap()
        .load_into(VisionTransformer::new(&cfg, &device), LoadMode::Strict)
        .unwrap();
    let run = || {
        model
            .forward(r.tensor::<4>("classifier_avg.x", &device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let per_forward = run();
    fsvfm_model::cpu_kernels::set_frozen_weights(true);
    assert_eq!(run(), per_forward);
    assert_eq!(run(), per_forward);
    fsvfm_model::cpu_kernels::set_frozen_weights(false);
}

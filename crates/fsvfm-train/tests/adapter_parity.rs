//! FS-Adapter training against `tools/reference/export_train_fixtures.py` (`adapter_step`): on
//! cached features, the label-smoothed CE, the Real-Anchor Contrastive loss and their sum
//! (≤ 1e-5 relative), and the adapter/projector/head after two AdamW steps (≤ 1e-5 absolute).

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::loss::real_anchor_con_loss;
use fsvfm_model::{
    AdapterConfig, FsAdapterClassifier, LoadMode, VitConfig, WeightFile, cpu_device,
};
use fsvfm_train::adapt::AdapterTrainer;
use fsvfm_train::{AdamW, AdamWSettings};

mod common;
use common::{read, rel, write_stripped};

#[test]
fn adapter_losses_and_two_adamw_steps_match_pytorch() {
    let fx =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapter_step.safetensors");
    let r = read(&fx);
    // The initial heads as a file with official keys, loaded over a fresh classifier.
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    write_stripped(&r, "init.", &init);
    let mut vit = VitConfig::new(8, 32, 2, 2);
    vit.img_size = 32;
    let cfg = AdapterConfig::new(vit);
    let device = cpu_device();
    let (model, report) = WeightFile::open(&init)
        .unwrap()
        .load_into(FsAdapterClassifier::new(&cfg, &device), LoadMode::Partial)
        .unwrap();
    assert_eq!(report.applied.len(), 6, "{report}");
    let settings = AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut t = AdapterTrainer::new(model, AdamW::new(settings), 0.1, &device);
    let h = &r["adapter.h"].1;
    let y: Vec<usize> = r["adapter.labels"].1.iter().map(|&v| v as usize).collect();
    for step in 0..2 {
        let l = t.step(h, &y, 1e-2);
        let want = &r[&format!("adapter.step{step}.losses")].1;
        for (g, w) in [l.ce, l.rac, l.total].iter().zip(want) {
            assert!(rel(*g, *w as f64) <= 1e-5, "step {step}: {g} vs {w}");
        }
    }
    let out = dir.path().join("after.safetensors");
    save_safetensors(&t.model, &out).unwrap();
    let got = read(&out);
    let mut worst = 0.0f32;
    for (k, (shape, want)) in r
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("after.")?, v)))
    {
        assert_eq!(&got[k].0, shape, "{k}");
        for (a, b) in got[k].1.iter().zip(want) {
            worst = worst.max((a - b).abs());
        }
        // And the step really moved them.
        let before = &r[&format!("init.{k}")].1;
        assert!(
            before.iter().zip(want).any(|(a, b)| (a - b).abs() > 1e-3),
            "{k} did not move"
        );
    }
    assert!(worst <= 1e-5, "parameters: max abs diff {worst:e}");
    // The backbone was not touched: fc_norm is still the identity.
    assert!(got["fc_norm.weight"].1.iter().all(|&v| v == 1.0));
    // No real sample in the batch: the official constant.
    let c = Tensor::<2>::from_data(
        TensorData::new(vec![0.6f32, 0.8, 1.0, 0.0], [2, 2]),
        &device,
    );
    let v = real_anchor_con_loss(c, &[false, false], 0.07).into_scalar::<f32>();
    assert!((v - r["adapter.no_real"].1[0]).abs() < 1e-12);
}

#[test]
fn an_all_zero_row_normalises_with_a_finite_gradient() {
    // A sample whose bottleneck ReLUs are all off reaches the projector as zeros (its bias starts
    // at 0): F.normalize must give it a zero, not NaN, gradient.
    let device = cpu_device().autodiff();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![0.0f32, 0.0, 0.0, 3.0, 4.0, 0.0], [2, 3]),
        &device,
    )
    .require_grad();
    let y = fsvfm_model::layers::l2_normalize(x.clone());
    let grads = (y.clone() * y.clone()).sum().backward();
    let g = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    let v = y.inner().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(&v[..3], &[0.0, 0.0, 0.0]);
    assert!((v[3] - 0.6).abs() < 1e-7 && (v[4] - 0.8).abs() < 1e-7);
}

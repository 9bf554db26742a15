//! Full fine-tuning against `tools/reference/export_train_fixtures.py` (`finetune_step`): the
//! BEiT layer-decay lr scales of every parameter, and two AdamW steps of a mean-pooled timm ViT
//! with label-smoothed CE: losses ≤ 1e-5 relative, parameters ≤ 1e-5 absolute.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::{LoadMode, VisionTransformer, VitConfig, WeightFile, cpu_device};
use fsvfm_train::finetune::{FinetuneTrainer, finetune_group};
use fsvfm_train::{AdamW, AdamWSettings};

mod common;
use common::{read, rel, write_stripped};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn layer_decay_scales_match_the_official_rule() {
    let scales: BTreeMap<String, f64> =
        serde_json::from_slice(&std::fs::read(fixture("finetune_lr_scales.json")).unwrap())
            .unwrap();
    assert_eq!(scales.len(), 32);
    for (name, want) in scales {
        let (got, _) = finetune_group(&name, &[1, 1], 2, 0.65);
        assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
    }
    assert!(!finetune_group("pos_embed", &[1, 17, 32], 2, 0.65).1);
    assert!(!finetune_group("cls_token", &[1, 1, 32], 2, 0.65).1);
    assert!(finetune_group("blocks.1.mlp.fc1.weight", &[32, 128], 2, 0.65).1);
    assert!(!finetune_group("fc_norm.gamma", &[32], 2, 0.65).1);
}

/// The fixture's `init.*` weights in a 2-block, 32-px classifier, with AdamW (wd 0.05) and
/// layer decay 0.65, as the reference script's optimiser.
fn trainer_at_init(r: &common::Tensors, dir: &std::path::Path) -> FinetuneTrainer {
    let init = dir.join("init.safetensors");
    write_stripped(r, "init.", &init);
    let mut cfg = VitConfig::new(8, 32, 2, 2);
    cfg.img_size = 32;
    let device = cpu_device();
    let (model, _) = WeightFile::open(&init)
        .unwrap()
        .load_into(VisionTransformer::new(&cfg, &device), LoadMode::Strict)
        .unwrap();
    let settings = AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    };
    FinetuneTrainer::new(model, AdamW::new(settings), 0.65, &device)
}

#[test]
fn two_finetuning_steps_match_pytorch() {
    let r = read(&fixture("finetune_step.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer_at_init(&r, dir.path());
    let x = &r["x"].1;
    let y: Vec<usize> = r["labels"].1.iter().map(|&v| v as usize).collect();
    for (step, lr) in [1e-3, 5e-4].into_iter().enumerate() {
        let loss = t.step(x, [4, 3, 32, 32], &y, lr);
        let want = r["losses"].1[step] as f64;
        assert!(rel(loss, want) <= 1e-5, "step {step}: {loss} vs {want}");
    }
    assert_params_match(&t, &r, dir.path());
}

/// Every `after.*` tensor of `r` against the trainer's parameters: ≤ 1e-5 absolute.
fn assert_params_match(t: &FinetuneTrainer, r: &common::Tensors, dir: &std::path::Path) {
    let out = dir.join("after.safetensors");
    save_safetensors(&t.model, &out).unwrap();
    let got = read(&out);
    let mut worst = (0.0f32, String::new());
    for (k, (shape, want)) in r
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("after.")?, v)))
    {
        assert_eq!(&got[k].0, shape, "{k}");
        // The attention key bias has an exactly zero gradient: both sides step on float noise
        // (≈ ±lr·scale), so it is bounded by the two steps' lr instead.
        let key_bias = k.ends_with("attn.qkv.bias").then_some(shape[0] / 3);
        for (i, (a, b)) in got[k].1.iter().zip(want).enumerate() {
            if key_bias.is_some_and(|d| (d..2 * d).contains(&i)) {
                assert!((a - b).abs() <= 3e-3, "{k}[{i}]");
            } else if (a - b).abs() > worst.0 {
                worst = ((a - b).abs(), format!("{k}[{i}]"));
            }
        }
    }
    assert!(
        worst.0 <= 1e-5,
        "parameters: max abs diff {:e} at {}",
        worst.0,
        worst.1
    );
}

/// One step on a Mixup batch (λ 0.7) against timm's `Mixup` + `SoftTargetCrossEntropy`: the
/// mixed images (≤ 1e-6), the soft targets (≤ 1e-6), the loss (≤ 1e-5 relative) and the
/// parameters after the step (≤ 1e-5).
#[test]
fn a_mixup_step_matches_timm() {
    use fsvfm_data::augment::{MixDraw, Mixup};
    let r = read(&fixture("finetune_mixup_step.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer_at_init(&r, dir.path());
    let mut x = r["x"].1.clone();
    let classes: Vec<usize> = r["labels"].1.iter().map(|&v| v as usize).collect();
    let draw = MixDraw {
        lam: 0.7,
        cutmix_box: None,
    };
    Mixup::mix_images(&draw, &mut x, 4, 32, 32);
    let close = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    assert!(close(&x, &r["mixed"].1) <= 1e-6, "mixed images");
    let soft = Mixup::default().targets(&classes, 2, draw.lam);
    assert!(
        close(&soft, &r["targets"].1) <= 1e-6,
        "{soft:?} vs {:?}",
        r["targets"].1
    );
    let loss = t.step_soft(&x, [4, 3, 32, 32], &soft, 1e-3);
    let want = r["loss"].1[0] as f64;
    assert!(rel(loss, want) <= 1e-5, "{loss} vs {want}");
    assert_params_match(&t, &r, dir.path());
}

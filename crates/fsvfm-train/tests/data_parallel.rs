//! "2 workers with batch b = 1 worker with batch 2b": two thread workers, each on half of a batch,
//! averaging gradients through the CPU collective, end an update with the parameters of one
//! worker on the whole batch (to 1e-6), and with bit-identical replicas.

use std::sync::Arc;

use fsvfm_model::checkpoint::save_safetensors;
use fsvfm_model::{FsfmPretrain, LoadMode, PretrainConfig, TargetNetwork, WeightFile, cpu_device};
use fsvfm_train::params::param_values;
use fsvfm_train::{AdamW, AdamWSettings, Collective, HostBatch, PretrainTrainer, ThreadCollective};

fn config() -> PretrainConfig {
    serde_json::from_str(
        r#"{"encoder": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
            "decoder_embed_dim": 24, "decoder_depth": 1, "decoder_num_heads": 4,
            "projection_size": 16, "projection_hidden_size": 48}"#,
    )
    .unwrap()
}

fn host_grads(g: &fsvfm_train::GradBuffer) -> std::collections::BTreeMap<String, Vec<f32>> {
    let mut g = g.clone();
    g.take()
        .into_iter()
        .map(|(k, v)| (k, v.into_data().try_to_vec::<f32>().unwrap()))
        .collect()
}

/// A fresh trainer from the shared initial weights (each worker its own replica).
fn trainer(dir: &std::path::Path) -> PretrainTrainer {
    let cfg = config();
    let device = cpu_device();
    let (online, _) = WeightFile::open(dir.join("online.safetensors"))
        .unwrap()
        .load_into(
            FsfmPretrain::new(&cfg, &device.clone().autodiff()),
            LoadMode::Strict,
        )
        .unwrap();
    let (target, _) = WeightFile::open(dir.join("target.safetensors"))
        .unwrap()
        .load_into(TargetNetwork::new(&cfg, &device), LoadMode::Strict)
        .unwrap();
    PretrainTrainer::new(
        online,
        target,
        AdamW::new(AdamWSettings::default()),
        &device,
        8,
        true,
    )
}

/// Samples `range` of a deterministic 4-image batch; every sample masks 12 of 16 patches and
/// covers 2, so both halves have equal mask and region counts.
fn batch(range: std::ops::Range<usize>) -> HostBatch {
    let per = 3 * 32 * 32;
    let mut images = Vec::new();
    let (mut mask, mut region) = (Vec::new(), Vec::new());
    for i in range.clone() {
        images.extend(
            (0..per).map(|j| (((i * per + j) * 2_654_435_761usize) >> 9) as f32 % 2.0 - 1.0),
        );
        for p in 0..16 {
            let m = (p + 3 * i) % 16 < 12;
            mask.push(m as u8);
            region.push((m && (p + 3 * i) % 16 < 2) as u8);
        }
    }
    HostBatch {
        images,
        dims: [range.len(), 3, 32, 32],
        mask,
        region,
    }
}

#[test]
fn two_workers_with_half_batches_equal_one_worker_with_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    {
        let device = cpu_device();
        device.seed(5);
        let online = FsfmPretrain::new(&config(), &device);
        save_safetensors(&online, dir.path().join("online.safetensors")).unwrap();
        save_safetensors(
            &TargetNetwork::from_online(&online),
            dir.path().join("target.safetensors"),
        )
        .unwrap();
    }
    let mut single = trainer(dir.path());
    let mut single_grads = None;
    for _ in 0..2 {
        single.micro_step(&batch(0..4), 1).unwrap();
        single_grads.get_or_insert_with(|| host_grads(&single.grads));
        single.update(1e-3, Some(1.0));
        single.ema(0.99);
    }
    let group = Arc::new(ThreadCollective::new(2));
    let workers: Vec<_> = (0..2)
        .map(|rank| {
            let group = group.clone();
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut t = trainer(&dir);
                let mut grads = None;
                for _ in 0..2 {
                    t.micro_step(&batch(2 * rank..2 * rank + 2), 1).unwrap();
                    group.all_reduce_mean(rank, &mut t.grads).unwrap();
                    grads.get_or_insert_with(|| host_grads(&t.grads));
                    t.update(1e-3, Some(1.0));
                    t.ema(0.99);
                }
                let to_host = |m: std::collections::BTreeMap<String, burn::tensor::Tensor<1>>| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.into_data().try_to_vec::<f32>().unwrap()))
                        .collect::<std::collections::BTreeMap<_, _>>()
                };
                (
                    to_host(param_values(&t.online)),
                    to_host(param_values(&t.target)),
                    grads.unwrap(),
                )
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results[0] == results[1], "the replicas diverged");
    // The averaged gradients are the whole batch's gradients.
    let want = single_grads.unwrap();
    assert_eq!(want.len(), results[0].2.len());
    let worst = want
        .iter()
        .flat_map(|(k, w)| w.iter().zip(&results[0].2[k]).map(|(a, b)| (a - b).abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "gradients: max abs diff {worst:e}");
    let want_online = param_values(&single.online);
    let want_target = param_values(&single.target);
    for (what, got, want) in [
        ("online", &results[0].0, want_online),
        ("target", &results[0].1, want_target),
    ] {
        let mut worst = (0.0f32, String::new());
        for (k, w) in want {
            let w = w.into_data().try_to_vec::<f32>().unwrap();
            // The attention key bias has an exactly zero gradient (it shifts whole softmax rows):
            // both sides hold float noise there, which AdamW's m/sqrt(v) turns into steps of
            // about ±lr; those entries are bounded by 2·Σlr instead.
            let key_bias = k.ends_with("attn.qkv.bias").then_some(w.len() / 3);
            for (i, (a, b)) in got[&k].iter().zip(&w).enumerate() {
                if key_bias.is_some_and(|d| (d..2 * d).contains(&i)) {
                    assert!((a - b).abs() <= 4e-3, "{what} {k}[{i}]");
                    continue;
                }
                if (a - b).abs() > worst.0 {
                    worst = ((a - b).abs(), format!("{k}[{i}]"));
                }
            }
        }
        assert!(
            worst.0 <= 1e-6,
            "{what}: max abs diff {:e} at {}",
            worst.0,
            worst.1
        );
    }
}

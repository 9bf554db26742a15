//! The pre-training loop end to end on synthetic faces: exact resume after a kill, the loss
//! falls, bad inputs are reported instead of aborting, non-finite batches are skipped.

use std::collections::HashMap;
use std::path::Path;

use fsvfm_model::cpu_device;
use fsvfm_train::synthetic::write_synthetic_faces;
use fsvfm_train::{
    HostBatch, PretrainOptions, PretrainRecipe, PretrainTrainer, Resume, Silent, pretrain,
};

/// The device RNG (initialisation, drop path) is process-global: runs in parallel tests would
/// interleave their draws.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// A recipe small enough for a test: 32-pixel faces, 8-pixel patches (4×4 grid), width 32.
fn micro_recipe(epochs: usize) -> PretrainRecipe {
    PretrainRecipe::from_toml(&format!(
        r#"
base = "tiny"
epochs = {epochs}
batch_size = 4
accum_iter = 2
lr = 2e-3
warmup_epochs = 1.0
save_every = 1
[model]
decoder_embed_dim = 24
decoder_depth = 1
decoder_num_heads = 4
projection_size = 16
projection_hidden_size = 48
[model.encoder]
img_size = 32
patch_size = 8
embed_dim = 32
depth = 2
num_heads = 2
"#
    ))
    .unwrap()
}

fn options(data: &Path, out: &Path, recipe: PretrainRecipe, resume: Resume) -> PretrainOptions {
    PretrainOptions {
        data: data.to_path_buf(),
        output: out.to_path_buf(),
        recipe,
        devices: vec![cpu_device()],
        resume,
        mean_std: None,
        stop_after: None,
        resume_epochs: None,
        init_only: false,
        group: None,
    }
}

fn tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

/// The networks and optimiser state of two checkpoint folders are bit-identical.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    for file in [
        "online.safetensors",
        "target.safetensors",
        "optimizer.safetensors",
    ] {
        let (x, y) = (tensors(&a.join(file)), tensors(&b.join(file)));
        assert!(!x.is_empty());
        assert_eq!(x.len(), y.len(), "{file}");
        for (k, v) in &x {
            assert!(y[k] == *v, "{file}: {k} differs after resume");
        }
    }
}

#[test]
fn killed_and_resumed_run_ends_bit_identical() {
    let _rng = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_faces(&data, 14, 32, 3, false).unwrap(); // 3 steps of 4 per epoch, 2 left over
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = pretrain(
        &options(&data, &a, micro_recipe(3), Resume::No),
        &mut Silent,
    )
    .unwrap();

    assert_eq!(full.epoch_losses.len(), 3);
    // Killed in the middle of epoch 1 (after checkpoint-0), between the two micro-steps of an update.
    let mut opts = options(&data, &b, micro_recipe(3), Resume::No);
    opts.stop_after = Some(3 + 1);
    let part = pretrain(&opts, &mut Silent).unwrap();
    assert!(part.interrupted);
    assert!(b.join("checkpoint-0/state.json").is_file());
    assert!(!b.join("checkpoint-1").exists());
    // A fresh start into a folder with checkpoints is refused rather than overwriting them.
    let err = pretrain(
        &options(&data, &b, micro_recipe(3), Resume::No),
        &mut Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let rest = pretrain(
        &options(&data, &b, micro_recipe(3), Resume::Latest),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(rest.epoch_losses.len(), 2);
    assert_eq!(&rest.epoch_losses[..], &full.epoch_losses[1..]);
    assert_same_checkpoint(&a.join("checkpoint-2"), &b.join("checkpoint-2"));
    // And training did change the weights.
    let first = tensors(&a.join("checkpoint-0/online.safetensors"));
    let last = tensors(&a.join("checkpoint-2/online.safetensors"));
    assert!(first["blocks.0.attn.qkv.weight"] != last["blocks.0.attn.qkv.weight"]);
    for f in [
        "recipe.toml",
        "samples.jsonl",
        "skipped.jsonl",
        "pretrain_ds_mean_std.txt",
        "log.jsonl",
    ] {
        assert!(a.join(f).is_file(), "{f}");
    }
    assert!(a.join("checkpoint-min_loss/online.safetensors").is_file());
}

#[test]
fn loss_falls_and_bad_inputs_are_reported() {
    let _rng = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_faces(&data, 16, 32, 11, false).unwrap();
    std::fs::write(data.join("images/corrupt.png"), b"not an image").unwrap();
    std::fs::write(data.join("parsing_maps/corrupt.png"), b"x").unwrap();
    std::fs::copy(
        data.join("images/synthetic_00000.png"),
        data.join("images/no_map.png"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut recipe = micro_recipe(12);
    recipe.save_every = 12;
    recipe.recon_every = 6;
    let s = pretrain(&options(&data, &out, recipe, Resume::No), &mut Silent).unwrap();
    let first = s.epoch_losses[0];
    let last = *s.epoch_losses.last().unwrap();
    assert!(
        last < 0.8 * first,
        "loss did not fall: {:?}",
        s.epoch_losses
    );
    let skipped = std::fs::read_to_string(out.join("skipped.jsonl")).unwrap();
    assert_eq!(skipped.lines().count(), 2, "{skipped}");
    assert!(skipped.contains("corrupt.png") && skipped.contains("cannot decode"));
    assert!(skipped.contains("no_map.png") && skipped.contains("no parsing map"));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"kind\":\"iter\""))
            .count(),
        12 * 4
    );
}

#[test]
fn a_non_finite_batch_changes_nothing() {
    let _rng = lock();
    let recipe = micro_recipe(1);
    let device = cpu_device();
    let online = fsvfm_model::FsfmPretrain::new(&recipe.model, &device.clone().autodiff());
    let target = fsvfm_model::TargetNetwork::from_online(&online);
    let mut t = PretrainTrainer::new(
        online,
        target,
        fsvfm_train::AdamW::new(recipe.optimizer),
        &device,
        8,
        true,
    );
    let mut images = vec![0.1f32; 2 * 3 * 32 * 32];
    images[5] = f32::NAN;
    let mut mask = vec![0u8; 32];
    for row in mask.chunks_mut(16) {
        row[..12].fill(1);
    }
    let batch = HostBatch {
        images,
        dims: [2, 3, 32, 32],
        region: mask.clone(),
        mask,
    };
    let loss = t.micro_step(&batch, 1).unwrap();
    assert!(!loss.is_finite());
    assert!(t.grads.is_empty());
    let info = t.update(1e-3, Some(1.0));
    assert!(!info.applied);
    assert_eq!(t.optim.step, 0);

    // Data parallel: the NaN sits in rank 1's half of a doubled batch; rank 0's half is finite.
    // The mean loss is not finite, so the caller drops the step on both ranks alike.
    let mut double = batch.clone();
    double.images = [vec![0.1f32; batch.images.len()], batch.images.clone()].concat();
    double.dims[0] = 4;
    double.mask = [batch.mask.clone(), batch.mask.clone()].concat();
    double.region = double.mask.clone();
    let group = fsvfm_train::for_devices(&[device.clone(), device.clone()]).unwrap();
    let mut pair = fsvfm_train::Replicas::new(t, &[device.clone(), device], group).unwrap();
    let loss = pair.forward_backward(&double, 1).unwrap();
    assert!(!loss.is_finite());
    let drop = fsvfm_train::Finish {
        commit: false,
        update: None,
        momentum: 0.99,
    };
    assert_eq!(pair.finish(drop).unwrap(), None);
    // Nothing was added on either rank: an update step now finds no gradients anywhere (the
    // ranks agree, or `finish` would report the disagreement).
    let info = pair
        .finish(fsvfm_train::Finish {
            commit: true,
            update: Some((1e-3, Some(1.0))),
            momentum: 0.99,
        })
        .unwrap()
        .unwrap();
    assert!(!info.applied);
    assert_eq!(pair.lead().optim.step, 0);
    // A batch that does not split evenly over the ranks is refused.
    let mut odd = batch.clone();
    odd.images.truncate(3 * 32 * 32);
    odd.dims[0] = 1;
    odd.mask.truncate(16);
    odd.region.truncate(16);
    let err = pair.forward_backward(&odd, 1).unwrap_err().to_string();
    assert!(err.contains("cannot be split evenly"), "{err}");
}

/// The two ablation baselines of `fsvfm demo`: `init_only` writes the initial networks, which
/// equal the first state of a real run with the same seed; weights `{0, 0}` with random masking
/// train plain MAE (no ID or region term in any logged total).
#[test]
fn init_only_and_mae_weights() {
    let _rng = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_faces(&data, 8, 32, 5, false).unwrap();
    let mut opts = options(&data, &tmp.path().join("init"), micro_recipe(1), Resume::No);
    opts.init_only = true;
    let s = pretrain(&opts, &mut Silent).unwrap();
    let dir = s.last_checkpoint.unwrap();
    assert!(dir.ends_with("checkpoint-init"), "{}", dir.display());
    assert!(s.epoch_losses.is_empty());
    assert!(dir.join("state.json").is_file());
    assert!(tmp.path().join("init/pretrain_ds_mean_std.txt").is_file());
    let init = tensors(&dir.join("online.safetensors"));
    // An init-only folder is not a resumable run.
    assert!(
        pretrain(
            &options(
                &data,
                &tmp.path().join("init"),
                micro_recipe(1),
                Resume::Latest
            ),
            &mut Silent
        )
        .is_err()
    );

    let mut mae = micro_recipe(2);
    mae.strategy = fsvfm_masking::Strategy::Random;
    mae.weight_region = 0.0;
    mae.weight_sim = 0.0;
    let out = tmp.path().join("mae");
    pretrain(&options(&data, &out, mae, Resume::No), &mut Silent).unwrap();
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let mut iters = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["kind"] != "iter" {
            continue;
        }
        iters += 1;
        let l = &v["loss"];
        assert_eq!(l["sim"].as_f64(), Some(0.0), "{line}");
        assert_eq!(l["total"].as_f64(), l["rec_masked"].as_f64(), "{line}");
    }
    assert!(iters > 0);
    // Same seed, so the MAE run started from the init-only networks; training moved them.
    let after = tensors(&out.join("checkpoint-1/online.safetensors"));
    assert_eq!(init.len(), after.len());
    assert!(init["blocks.0.attn.qkv.weight"] != after["blocks.0.attn.qkv.weight"]);
}

#[test]
fn two_cpu_workers_train_like_one_worker_with_the_doubled_batch() {
    let _rng = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_faces(&data, 16, 32, 5, false).unwrap();
    // Without L_rec^fr: it is a ratio per worker (as under the official DDP), so the mean of two
    // halves equals the whole batch's value only when the halves cover equally many region
    // patches. Every other term is a mean over samples with equal mask counts (CRFR-P masks 12 of
    // 16 patches in each face), so the averaged gradients are the whole batch's.
    let recipe = |batch: usize| {
        let mut r = micro_recipe(2);
        r.batch_size = batch;
        r.weight_region = 0.0;
        r
    };
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let single = pretrain(&options(&data, &one, recipe(4), Resume::No), &mut Silent).unwrap();
    let mut opts = options(&data, &two, recipe(2), Resume::No);
    opts.devices = vec![cpu_device(), cpu_device()];
    let pair = pretrain(&opts, &mut Silent).unwrap();

    let saved = std::fs::read_to_string(two.join("recipe.toml")).unwrap();
    assert!(saved.contains("world_size = 2"), "{saved}");
    let lines = |dir: &Path| std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let iters = |dir: &Path| {
        lines(dir)
            .lines()
            .filter(|l| l.contains("\"iter\""))
            .count()
    };
    assert_eq!(iters(&one), 8, "4 steps of 4 faces per epoch");
    assert_eq!(
        iters(&two),
        iters(&one),
        "the same global batch, so the same steps"
    );
    for (a, b) in single.epoch_losses.iter().zip(&pair.epoch_losses) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "epoch loss {a} vs {b}"
        );
    }
    let worst = fsvfm_train::checkpoint::max_parameter_difference(
        &one.join("checkpoint-1"),
        &two.join("checkpoint-1"),
    )
    .unwrap();
    assert!(
        worst <= 1e-6,
        "parameters after 4 updates: max abs diff {worst:e}"
    );
    // The weights did move, so the comparison is not of two initialisations.
    let init = tensors(&one.join("checkpoint-0/online.safetensors"));
    let last = tensors(&one.join("checkpoint-1/online.safetensors"));
    assert!(init["blocks.0.attn.qkv.weight"] != last["blocks.0.attn.qkv.weight"]);

    // The world size is part of the run: a resume on another number of devices is refused.
    let mut more = options(&data, &two, recipe(2), Resume::Latest);
    more.resume_epochs = Some(3);
    let err = pretrain(&more, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("2 device(s)"), "{err}");
}

#[test]
fn a_killed_two_worker_run_resumes_bit_identical() {
    let _rng = lock();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_faces(&data, 12, 32, 7, false).unwrap(); // 3 steps of 2 × 2 per epoch
    let two = |out: &Path, resume: Resume| {
        // Three epochs: a replica resumed wrongly (rank 1 only) would feed its gradients into
        // the updates after the resumed epoch, and so into rank 0's checkpoint.
        let mut r = micro_recipe(3);
        r.batch_size = 2;
        let mut o = options(&data, out, r, resume);
        o.devices = vec![cpu_device(), cpu_device()];
        o
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    pretrain(&two(&a, Resume::No), &mut Silent).unwrap();
    let mut killed = two(&b, Resume::No);
    killed.stop_after = Some(3 + 1); // inside epoch 1, between the micro-steps of an update
    assert!(pretrain(&killed, &mut Silent).unwrap().interrupted);
    pretrain(&two(&b, Resume::Latest), &mut Silent).unwrap();
    assert_same_checkpoint(&a.join("checkpoint-2"), &b.join("checkpoint-2"));
}

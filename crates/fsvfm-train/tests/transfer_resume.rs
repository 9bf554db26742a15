//! A transfer run killed after an epoch and continued with `resume` ends with the same
//! parameters, bit for bit, as the uninterrupted run: full fine-tuning with the official
//! augmentation (RandomResizedCrop, RandAugment, erasing, Mixup/CutMix) and drop path, and the
//! FS-Adapter on the augmented path. The "kill" is the epoch callback asking the loop to stop
//! after epoch 1 (its checkpoint written), which is where a killed run resumes from. Also: the
//! folder is refused without `resume`, and a resume with other settings is refused.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use fsvfm_data::{EvalSample, MeanStd};
use fsvfm_model::{AdapterConfig, FsAdapterClassifier, VisionTransformer, VitConfig, cpu_device};
use fsvfm_train::adapt::{AdaptOptions, adapt};
use fsvfm_train::batches::Augmentation;
use fsvfm_train::finetune::{FinetuneOptions, finetune};
use fsvfm_train::transfer::TransferOptions;
use fsvfm_train::{AdamW, AdamWSettings, TrainError};

/// 12 real (warm, smooth) and 12 fake (cool, striped) 40-px images.
fn images(dir: &Path) -> Vec<EvalSample> {
    let mut out = Vec::new();
    for i in 0..24u32 {
        let fake = i % 2 == 1;
        let img = image::RgbImage::from_fn(40, 40, |x, y| {
            let v = ((x * 3 + y * 5 + i * 11) % 64) as u8;
            if fake {
                image::Rgb([
                    60 + v,
                    90 + if (x / 3) % 2 == 0 { 60 } else { 0 },
                    160 + v / 2,
                ])
            } else {
                image::Rgb([170 + v, 120 + v / 2, 90 + v / 3])
            }
        });
        let p = dir.join(format!("img{i:02}.png"));
        img.save(&p).unwrap();
        out.push(EvalSample {
            image: p,
            label: fake as u8,
            video: None,
        });
    }
    out
}

fn cfg() -> VitConfig {
    let mut c = VitConfig::new(8, 32, 2, 2);
    c.img_size = 32;
    c.num_classes = 2;
    c.global_pool = true;
    c.drop_path_rate = 0.1;
    c
}

fn options(
    samples: &[EvalSample],
    output: PathBuf,
    epochs: usize,
    resume: bool,
) -> TransferOptions {
    TransferOptions {
        train: samples[..18].to_vec(),
        val: samples[18..].to_vec(),
        output,
        img_size: 32,
        model: cfg(),
        mean_std: MeanStd {
            mean: [0.5, 0.45, 0.4],
            std: [0.25, 0.25, 0.25],
        },
        epochs,
        batch_size: 6,
        blr: 0.05,
        warmup_epochs: 1.0,
        weight_decay: 0.05,
        seed: 3,
        augment: Augmentation::default(),
        augment_picture: false,
        resume,
        balance: false,
        on_step: None,
        device: cpu_device(),
    }
}

fn settings() -> AdamWSettings {
    AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    }
}

/// Stop the run after epoch `stop` (as if killed there; the epoch's checkpoint is written).
fn stopper(stop: Option<usize>) -> impl FnMut(usize) -> ControlFlow<()> {
    move |epoch| match stop {
        Some(s) if epoch + 1 >= s => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    }
}

type Run = fn(&[EvalSample], &Path, usize, bool, Option<usize>) -> Result<(), TrainError>;

fn run_finetune(
    samples: &[EvalSample],
    out: &Path,
    epochs: usize,
    resume: bool,
    stop: Option<usize>,
) -> Result<(), TrainError> {
    let device = cpu_device();
    device.seed(9);
    let model = VisionTransformer::new(&cfg(), &device);
    let opts = FinetuneOptions {
        common: options(samples, out.to_path_buf(), epochs, resume),
        layer_decay: 0.75,
    };
    let mut stop = stopper(stop);
    finetune(model, AdamW::new(settings()), &opts, |e| stop(e.epoch))?;
    Ok(())
}

fn run_adapt(
    samples: &[EvalSample],
    out: &Path,
    epochs: usize,
    resume: bool,
    stop: Option<usize>,
) -> Result<(), TrainError> {
    let device = cpu_device();
    device.seed(9);
    let mut c = cfg();
    c.drop_path_rate = 0.0;
    let model = FsAdapterClassifier::new(&AdapterConfig::new(c), &device);
    let opts = AdaptOptions {
        common: options(samples, out.to_path_buf(), epochs, resume),
        w_cl: 0.1,
    };
    let mut stop = stopper(stop);
    adapt(model, &opts, |e| stop(e.epoch))?;
    Ok(())
}

/// Every trained tensor of `checkpoint-last/`, keyed `file/name`.
fn last_params(out: &Path) -> fsvfm_data::F32Tensors {
    let mut all = fsvfm_data::F32Tensors::new();
    for e in std::fs::read_dir(out.join("checkpoint-last")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".safetensors") && name != "optimizer.safetensors" {
            for (k, v) in fsvfm_data::read_f32_safetensors(&p).unwrap() {
                all.insert(format!("{name}/{k}"), v);
            }
        }
    }
    assert!(!all.is_empty());
    all
}

/// burn's CPU device generator (model init, drop path) is process-wide: the two tests take turns.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(name: &str, run: Run) {
    let _turn = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let samples = images(dir.path());
    let (full, killed) = (dir.path().join("full"), dir.path().join("killed"));
    run(&samples, &full, 3, false, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    run(&samples, &killed, 3, false, Some(1)).unwrap();
    assert_eq!(
        std::fs::read_to_string(killed.join("log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // The same output without --resume is refused (nothing is overwritten) …
    let e = run(&samples, &killed, 3, false, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume"), "{name}: {e}");
    // … and so is a resume that would change the schedule.
    let e = run(&samples, &killed, 4, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("settings"), "{name}: {e}");
    run(&samples, &killed, 3, true, None).unwrap_or_else(|e| panic!("{name} resume: {e}"));
    let (want, got) = (last_params(&full), last_params(&killed));
    assert_eq!(want.len(), got.len());
    for (k, (shape, v)) in &want {
        assert_eq!(&got[k].0, shape, "{name}: {k}");
        assert!(got[k].1 == *v, "{name}: {k} differs after the resume");
    }
    let log = std::fs::read_to_string(killed.join("log.jsonl")).unwrap();
    assert_eq!(
        log.lines().count(),
        3,
        "{name}: one log line per epoch across the resume"
    );
    // Nothing left to do: a resume of a finished run trains no further.
    run(&samples, &killed, 3, true, None).unwrap();
    assert!(
        last_params(&killed)
            .iter()
            .all(|(k, (_, v))| want[k].1 == *v)
    );
}

#[test]
fn finetuning_resumes_exactly() {
    check("finetune", run_finetune);
}

#[test]
fn adapter_training_resumes_exactly() {
    check("adapt", run_adapt);
}

//! `fsvfm bench`: inference throughput and peak memory of a preset (random weights), the Rust side
//! of `tools/bench/run_inference_bench.py`.

use std::time::Instant;

use anyhow::{Result, ensure};
use burn::tensor::{Distribution, Tensor};
use clap::Args;
use fsvfm_model::VisionTransformer;

use crate::runtime::peak_rss_bytes;

/// Arguments of `fsvfm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Preset or JSON config.
    #[arg(long, default_value = "vit_small_patch16")]
    pub model: String,
    /// Images per forward pass.
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 8)]
    pub batch_size: usize,
    /// Timed iterations (the median is reported).
    #[arg(value_parser = crate::flags::ITERATIONS, long, default_value_t = 6)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(value_parser = crate::flags::count::<0, 100_000>, long, default_value_t = 2)]
    pub warmup: usize,
    /// Time one pre-training iteration instead (online forward/backward on a 75 %-masked batch,
    /// target forward, losses, global clip, AdamW, EMA) of the preset's pre-training networks.
    #[arg(long, conflicts_with = "finetune")]
    pub train: bool,
    /// Time one full fine-tuning step instead (the mean-pooled classifier with drop path 0.1 on
    /// a Mixup batch: soft-target CE, backward, layer-decay AdamW).
    #[arg(long)]
    pub finetune: bool,
}

/// `fsvfm bench`: prints one JSON line.
pub fn bench(a: BenchArgs) -> Result<()> {
    ensure!(
        a.batch_size > 0 && a.iters > 0,
        "--batch-size and --iters must be positive"
    );
    if a.train {
        return bench_train(&a);
    }
    if a.finetune {
        return bench_finetune(&a);
    }
    let cfg = fsvfm::model_config(&a.model)?;
    cfg.validate()?;
    let device = crate::runtime::device();
    let model = VisionTransformer::new(&cfg, &device);
    let x = Tensor::<4>::random(
        [a.batch_size, cfg.in_chans, cfg.img_size, cfg.img_size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut times = Vec::with_capacity(a.iters);
    for i in 0..a.warmup + a.iters {
        let t = Instant::now();
        let y = model.forward(x.clone());
        // Reading the result forces the whole computation.
        let _ = y.into_data();
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    report(&a, "inference", times);
    Ok(())
}

fn report(a: &BenchArgs, kind: &str, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let out = serde_json::json!({
        "impl": "fsvfm-burn-flex",
        "kind": kind,
        "model": a.model,
        "batch_size": a.batch_size,
        "threads": rayon::current_num_threads(),
        "median_s": median,
        "img_per_s": a.batch_size as f64 / median,
        "times_s": times,
        "peak_rss_bytes": peak_rss_bytes(),
        // Which GEMM ran the blocks: "fp32", or the bf16 path (AMX tiles or AVX-512 BF16).
        "gemm": fsvfm_model::cpu_kernels::gemm_name(),
    });
    println!("{out}");
}

/// One fine-tuning step per timed step, random weights and images (λ 0.7 Mixup soft targets),
/// the same step as `tools/bench/torch_finetune_step.py`.
fn bench_finetune(a: &BenchArgs) -> Result<()> {
    let mut cfg = fsvfm::model_config(&a.model)?;
    cfg.num_classes = 2;
    cfg.global_pool = true;
    cfg.drop_path_rate = 0.1;
    cfg.validate()?;
    let device = crate::runtime::device();
    let model = VisionTransformer::new(&cfg, &device);
    let settings = fsvfm_train::AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    };
    let mut trainer = fsvfm_train::finetune::FinetuneTrainer::new(
        model,
        fsvfm_train::AdamW::new(settings),
        0.65,
        &device,
    );
    let (n, s) = (a.batch_size, cfg.img_size);
    let mut images: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let mix = fsvfm_data::augment::MixDraw {
        lam: 0.7,
        cutmix_box: None,
    };
    fsvfm_data::augment::Mixup::mix_images(&mix, &mut images, n, s, s);
    let classes: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let soft = fsvfm_data::augment::Mixup::default().targets(&classes, 2, mix.lam);
    let mut times = Vec::with_capacity(a.iters);
    for i in 0..a.warmup + a.iters {
        let t = Instant::now();
        // The returned loss is read back, which forces the step's computation.
        let _ = trainer.step_soft(&images, [n, 3, s, s], &soft, 1e-4);
        let _ = trainer.model.cls_token.val().into_data();
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    report(a, "finetune-step", times);
    Ok(())
}

/// One pre-training iteration per timed step, random weights and images; the mask keeps the
/// first quarter of the patches of each sample visible and the covered region is 8 masked patches.
fn bench_train(a: &BenchArgs) -> Result<()> {
    let cfg = fsvfm_model::PretrainConfig::preset(&a.model)
        .ok_or_else(|| anyhow::anyhow!("--train needs a preset name, not {}", a.model))?;
    let device = crate::runtime::device();
    let online = fsvfm_model::FsfmPretrain::new(&cfg, &device.clone().autodiff());
    let target = fsvfm_model::TargetNetwork::from_online(&online);
    let mut trainer = fsvfm_train::PretrainTrainer::new(
        online,
        target,
        fsvfm_train::AdamW::new(fsvfm_train::AdamWSettings::default()),
        &device,
        cfg.encoder.patch_size,
        true,
    );
    let (n, s, l) = (
        a.batch_size,
        cfg.encoder.img_size,
        cfg.encoder.num_patches(),
    );
    let keep = l - fsvfm_masking::masked_count(0.75, l)?;
    let mut mask = vec![1u8; n * l];
    let mut region = vec![0u8; n * l];
    for i in 0..n {
        // A different visible set per sample, so gathers are not trivial.
        for k in 0..keep {
            mask[i * l + (k * 4 + i) % l] = 0;
        }
        let masked: Vec<usize> = (0..l).filter(|&p| mask[i * l + p] == 1).take(8).collect();
        for p in masked {
            region[i * l + p] = 1;
        }
    }
    let images: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let batch = fsvfm_train::HostBatch {
        images,
        dims: [n, 3, s, s],
        mask,
        region,
    };
    let mut times = Vec::with_capacity(a.iters);
    for i in 0..a.warmup + a.iters {
        let t = Instant::now();
        trainer.micro_step(&batch, 1)?;
        trainer.update(1e-4, Some(1.0));
        trainer.ema(0.996);
        // Reading a parameter forces every pending computation.
        let _ = trainer.target.norm.gamma.val().into_data();
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    report(a, "pretrain-step", times);
    Ok(())
}

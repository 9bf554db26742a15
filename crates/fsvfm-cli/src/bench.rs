//! `fsvfm bench`: inference throughput and peak memory of a preset (random weights), the Rust side
//! of `tools/bench/run_inference_bench.py`.

use std::time::Instant;

use anyhow::{Result, ensure};
use burn::tensor::{Distribution, Tensor};
use clap::Args;
use fsvfm_model::VisionTransformer;

use crate::forward::resolve_config;
use crate::runtime::peak_rss_bytes;

/// Arguments of `fsvfm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Preset or JSON config.
    #[arg(long, default_value = "vit_small_patch16")]
    pub model: String,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 6)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
}

/// `fsvfm bench`: prints one JSON line.
pub fn bench(a: BenchArgs) -> Result<()> {
    ensure!(
        a.batch_size > 0 && a.iters > 0,
        "--batch-size and --iters must be positive"
    );
    let cfg = resolve_config(&a.model)?;
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
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let out = serde_json::json!({
        "impl": "fsvfm-burn-flex",
        "model": a.model,
        "batch_size": a.batch_size,
        "threads": rayon::current_num_threads(),
        "median_s": median,
        "img_per_s": a.batch_size as f64 / median,
        "times_s": times,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{out}");
    Ok(())
}

//! Times the CPU kernels at ViT-S/16 batch-8 shapes (1 thread unless RAYON_NUM_THREADS says so):
//! `cargo run --release -p fsvfm-model --example kernel_timing`
use std::time::Instant;

use fsvfm_model::cpu_kernels::{attention_from_qkv, gelu_inplace, linear};

fn time<F: FnMut()>(name: &str, flops: f64, mut f: F) {
    f();
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{name:<28} {:8.2} ms  {:7.1} GFLOP/s",
        s * 1e3,
        flops / s / 1e9
    );
}

fn main() {
    let (n, t, d) = (8usize, 197usize, 384usize);
    let m = n * t;
    let x: Vec<f32> = (0..m * d)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0)
        .collect();
    for (name, k, o) in [
        ("qkv 1576x384x1152", d, 3 * d),
        ("fc1 1576x384x1536", d, 4 * d),
        ("fc2 1576x1536x384", 4 * d, d),
    ] {
        let xi: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
            .collect();
        let w: Vec<f32> = (0..k * o)
            .map(|i| ((i * 11 % 17) as f32 - 8.0) / 100.0)
            .collect();
        time(name, 2.0 * (m * k * o) as f64, || {
            std::hint::black_box(linear(&xi, &w, None, m, k, o));
        });
    }
    let qkv: Vec<f32> = (0..m * 3 * d)
        .map(|i| ((i * 13 % 101) as f32 - 50.0) / 60.0)
        .collect();
    for heads in [6, 12] {
        time(
            &format!("attention {heads} heads"),
            4.0 * (n * t * t * d) as f64,
            || {
                std::hint::black_box(attention_from_qkv(&qkv, n, t, d, heads));
            },
        );
    }
    let mut h: Vec<f32> = (0..m * 4 * d)
        .map(|i| ((i % 1000) as f32 - 500.0) / 100.0)
        .collect();
    time("gelu 1576x1536", 0.0, || gelu_inplace(&mut h));
    let _ = x;
}

//! The AMX bf16 GEMM against this core's measured `tdpbf16ps` peak, at the block GEMMs of
//! ViT-S/16 and ViT-B/16 (batch 8 and 1), and attention (both products and the softmax) against
//! its bf16 precision (on the tiles under `FSVFM_AMX_ATTENTION=1`), on the threads rayon has
//! (`RAYON_NUM_THREADS`):
//! `cargo run --release -p fsvfm-model --example amx_gemm [reps]`
use std::time::Instant;

use fsvfm_model::amx::{self, Hardware, Tiles};
use fsvfm_model::bf16_gemm::{self, Path};

/// Best of `reps` seconds of `f` (the VM's neighbours add noise, never speed).
fn best<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// One core's `tdpbf16ps` rate on four independent accumulator tiles, GFLOP/s.
fn peak() -> f64 {
    let ones = vec![0x3f80_3f80u32; 256];
    let n = 2_000_000usize;
    best(3, || {
        // SAFETY: AMX is available (checked in main); every tile reads 16 rows of 64 bytes of `ones`.
        unsafe {
            let mut h = Hardware;
            h.configure();
            for c in 0..4 {
                h.zero(c);
            }
            for a in 4..8 {
                h.load(a, ones.as_ptr().cast(), 64);
            }
            for _ in 0..n {
                for c in 0..4 {
                    h.dot(c);
                }
            }
            h.release();
        }
    })
    .recip()
        * (n * 4 * 16 * 16 * 32 * 2) as f64
        / 1e9
}

fn main() {
    if !amx::available() {
        println!("no AMX on this CPU (or FSVFM_NO_AMX is set)");
        return;
    }
    let reps: usize = std::env::args()
        .nth(1)
        .map_or(20, |s| s.parse().expect("reps"));
    let threads = rayon::current_num_threads();
    let peak = peak();
    println!("peak tdpbf16ps {peak:.0} GFLOP/s per core; {threads} thread(s)");
    for (model, d) in [("ViT-S", 384usize), ("ViT-B", 768)] {
        for batch in [8usize, 1] {
            let m = batch * 197;
            for (name, k, n) in [
                ("qkv", d, 3 * d),
                ("proj", d, d),
                ("fc1", d, 4 * d),
                ("fc2", 4 * d, d),
            ] {
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
                    .collect();
                let w: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 11 % 17) as f32 - 8.0) / 100.0)
                    .collect();
                let packed = bf16_gemm::PackedB::pack_for(Path::Amx, &w, k, n);
                let mut c = vec![0f32; m * n];
                let s = best(reps, || bf16_gemm::matmul_acc_bf16(&mut c, &a, &packed, m));
                let g = 2.0 * (m * k * n) as f64 / s / 1e9;
                println!(
                    "{model} b{batch} {name:<4} {m:>5}x{k:<4}x{n:<4} {:7.3} ms {g:7.0} GFLOP/s  {:4.1} % of peak",
                    s * 1e3,
                    100.0 * g / (peak * threads as f64)
                );
            }
        }
    }
    use fsvfm_model::cpu_kernels::{Precision, attention_from_qkv, set_precision};
    for (model, d, heads) in [("ViT-S", 384usize, 12usize), ("ViT-B", 768, 12)] {
        let (n, t) = (8usize, 197usize);
        let qkv: Vec<f32> = (0..n * t * 3 * d)
            .map(|i| ((i * 13 % 101) as f32 - 50.0) / 60.0)
            .collect();
        let flops = 4.0 * (n * t * t * d) as f64;
        for p in [Precision::Fp32, Precision::Bf16] {
            set_precision(p);
            let s = best(reps, || {
                std::hint::black_box(attention_from_qkv(&qkv, n, t, d, heads));
            });
            println!(
                "{model} b8 attention {heads} heads {p:?}: {:7.3} ms {:7.0} GFLOP/s",
                s * 1e3,
                flops / s / 1e9
            );
        }
        set_precision(Precision::Fp32);
    }
}

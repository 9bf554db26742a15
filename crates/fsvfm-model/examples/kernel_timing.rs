//! Times the CPU kernels at ViT-S/16 batch-8 shapes (1 thread unless RAYON_NUM_THREADS says so),
//! fp32 and bf16 GEMMs, and this core's peak rates of `vfmadd231ps` (fp32 FMA) and `vdpbf16ps`
//! (bf16 dot product) on independent accumulators (AMX's peak: `examples/amx_gemm.rs`);
//! `FSVFM_NO_AMX=1` hides AMX:
//! `cargo run --release -p fsvfm-model --example kernel_timing`
use std::time::Instant;

use fsvfm_model::bf16_gemm;
use fsvfm_model::cpu_kernels::{attention_from_qkv, gelu_inplace, linear};

fn time<F: FnMut()>(name: &str, flops: f64, mut f: F) {
    f();
    // The best of 10: this VM's neighbours add noise, never speed.
    let s = (0..10)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
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
        let paths = [bf16_gemm::Path::Avx512Bf16, bf16_gemm::Path::Amx];
        let have = [bf16_gemm::available_vdp(), fsvfm_model::amx::available()];
        for (path, _) in paths.into_iter().zip(have).filter(|p| p.1) {
            let packed = bf16_gemm::PackedB::pack_for(path, &w, k, o);
            let mut c = vec![0f32; m * o];
            time(
                &format!("{name} {path:?}"),
                2.0 * (m * k * o) as f64,
                || {
                    bf16_gemm::matmul_acc_bf16(&mut c, &xi, &packed, m);
                },
            );
        }
    }
    peaks();
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

/// Peak GFLOP/s of one core: 24 independent zmm accumulators, so only throughput counts.
fn peaks() {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx512f")]
        unsafe fn fma(n: usize) -> f32 {
            let a = _mm512_set1_ps(1.0001);
            let mut acc = [_mm512_setzero_ps(); 24];
            for _ in 0..n {
                for x in acc.iter_mut() {
                    *x = _mm512_fmadd_ps(a, a, *x);
                }
            }
            let mut s = _mm512_setzero_ps();
            for x in acc {
                s = _mm512_add_ps(s, x);
            }
            _mm512_reduce_add_ps(s)
        }
        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn dp(n: usize) -> f32 {
            // SAFETY: same size, any bit pattern is a valid vector.
            let a: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3f80_3f80)) };
            let mut acc = [_mm512_setzero_ps(); 24];
            for _ in 0..n {
                for x in acc.iter_mut() {
                    *x = _mm512_dpbf16_ps(*x, a, a);
                }
            }
            let mut s = _mm512_setzero_ps();
            for x in acc {
                s = _mm512_add_ps(s, x);
            }
            _mm512_reduce_add_ps(s)
        }
        let n = 20_000_000usize;
        if std::arch::is_x86_feature_detected!("avx512f") {
            let t = Instant::now();
            // SAFETY: the feature was detected.
            std::hint::black_box(unsafe { fma(n) });
            let g = (n * 24 * 16 * 2) as f64 / t.elapsed().as_secs_f64() / 1e9;
            println!("{:<28} {g:7.1} GFLOP/s (1 core)", "peak vfmadd231ps fp32");
        }
        if bf16_gemm::available_vdp() {
            let t = Instant::now();
            // SAFETY: the features were detected.
            std::hint::black_box(unsafe { dp(n) });
            let g = (n * 24 * 16 * 4) as f64 / t.elapsed().as_secs_f64() / 1e9;
            println!("{:<28} {g:7.1} GFLOP/s (1 core)", "peak vdpbf16ps bf16");
        }
    }
}

//! `FSVFM_NO_AMX` hides AMX (its own test binary: the choice is made once per process): bf16
//! then takes the AVX-512 BF16 kernel (or fp32 where that is missing too), never a tile
//! instruction, and the GEMM still equals the product of the bf16-rounded inputs.

use fsvfm_model::bf16_gemm::{self, PackedB, Path, bf16_bits, bf16_to_f32};
use fsvfm_model::cpu_kernels::{Precision, set_precision};

#[test]
fn without_amx_bf16_falls_back_to_avx512_or_fp32() {
    // SAFETY: the only test of this binary, run before any other thread reads the environment.
    unsafe { std::env::set_var("FSVFM_NO_AMX", "1") };
    assert!(!fsvfm_model::amx::available());
    let path = bf16_gemm::path();
    assert_ne!(path, Some(Path::Amx));
    assert_eq!(path.is_some(), bf16_gemm::available_vdp());
    let got = set_precision(Precision::Bf16);
    assert_eq!(got == Precision::Bf16, path.is_some());
    let Some(path) = path else {
        eprintln!("no AVX-512 BF16 either: bf16 runs as fp32 (checked above)");
        return;
    };
    let (m, k, n) = (37, 70, 45);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
        .collect();
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 11 % 17) as f32 - 8.0) / 9.0)
        .collect();
    let packed = PackedB::pack(&w, k, n);
    assert_eq!(packed.path(), path);
    let mut c = vec![0f32; m * n];
    bf16_gemm::matmul_acc_bf16(&mut c, &a, &packed, m);
    let r = |x: f32| bf16_to_f32(bf16_bits(x)) as f64;
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k).map(|l| r(a[i * k + l]) * r(w[l * n + j])).sum();
            assert!((c[i * n + j] as f64 - want).abs() < 1e-4, "[{i},{j}]");
        }
    }
}

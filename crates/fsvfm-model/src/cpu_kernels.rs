//! CPU inference kernels for the two ops where burn flex's generic versions dominate a ViT
//! forward (`../shared/spec/cpu-perf.md` §4): exact-erf GELU (scalar `erff`, single-threaded in
//! flex) and attention (scalar per-row softmax with `expf`), and the whole transformer block
//! built on them. The blocks run here only off autodiff devices; training uses burn's
//! differentiable ops, with this module's GELU, softmax, GEMM and attention (forward and
//! [`attention_backward`]) behind its fused ops ([`crate::train_ops`]), and its AdamW and EMA
//! passes ([`adamw_inplace`], [`ema_inplace`]) behind the optimiser.
//!
//! - GELU: `0.5·x·(1 + erf(x/√2))` with erf from Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7) and a
//!   polynomial `exp`, vectorised by the compiler (AVX-512/AVX2 versions picked at run time) and
//!   split across threads.
//! - Attention: one task per (sample, head), reading q, k, v straight out of the fused `qkv`
//!   projection `[N, T, 3D]` (timm's `3, H, hd` layout) with strided single-threaded GEMMs,
//!   a vectorised softmax in between, and writing the head's output into `[N, T, D]` at its
//!   column offset, so the head split/merge permutes disappear too.
//! - Precision ([`set_precision`]): fp32 by default; bf16 runs the four linear layers of each
//!   block on [`crate::bf16_gemm`] (fp32 accumulation) on the best path the CPU has: AMX tiles
//!   ([`crate::amx`]; the attention products too under `FSVFM_AMX_ATTENTION=1`), else
//!   AVX-512 BF16 (`vdpbf16ps`), else fp32.
//! - Frozen weights ([`set_frozen_weights`], the inference commands): in bf16 each block's packs
//!   are made at the first forward and reused. fp32 reads the weights in place from burn's flex
//!   storage ([`HostBuf`]): no copy per forward and no second copy in memory.
//! - Threads: with as many equal shares of the batch as threads, each thread runs its share
//!   through every block with single-threaded GEMMs ([`split_batch`]: no joins at all);
//!   otherwise (a batch of 1) each block splits its row-local parts by rows, two joins per block
//!   ([`block_forward`]). The intermediates live in pooled [`Scratch`] buffers.
//! - Measured on a 2-core AVX-512 Xeon, ViT-S/16 fp32 against PyTorch fp32 (`BENCHMARKS.md`,
//!   before → after these three): batch 1 at one thread 0.70x → 0.83x (the weight copy was
//!   19 % of its profile); batch 8 at two threads 0.90x → 1.24x (mostly the per-thread shares,
//!   +17 % in a direct A/B); batch 1 at two threads 0.62x → 0.94x (the row split). An own fp32
//!   AVX-512 micro-kernel (14 × 32 tile) was tried against the `gemm` crate's and lost (88–135
//!   against 117–162 GFLOP/s on the ViT shapes), so the `gemm` crate stays.
//!
//! Why host kernels inside this crate rather than custom burn ops or a separate inference crate:
//! the blocks already run on host buffers between one copy in and one out (`run_blocks`), the
//! same modules, weights and parity fixtures serve training and inference, and everything
//! outside the blocks (patch embedding, pooling, heads: < 3 % of the FLOPs) stays burn's.

use rayon::prelude::*;

/// Defines `fn $name(args)` running `$generic(args)` compiled for AVX-512 or AVX2+FMA when the
/// CPU has them (the binary itself stays portable), else the baseline build.
macro_rules! dispatch_simd {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $generic:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

/// `e^x` for x ≤ 0 (softmax after max subtraction) and moderate |x|: 2^(x·log2 e) split into an
/// integer power set in the exponent bits and a degree-6 polynomial on [−½, ½]. Relative error
/// ≤ 2e-7 near 0, growing to ~1e-6·|x|/20 from the f32 rounding of `x·log2 e` (harmless for
/// softmax, where such terms weigh < e^-20). Written branch-free so it vectorises.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E;
    // Round-to-nearest by the 1.5·2²³ trick: the low mantissa bits of `y` hold round(t) as an
    // integer (|t| < 2²²), with float adds and bit casts only, so the loop stays vectorised
    // (an `as i32` cast would be scalarised for its saturation semantics).
    const MAGIC: f32 = 12_582_912.0;
    let y = t + MAGIC;
    let n = y - MAGIC;
    let f = (t - n) * std::f32::consts::LN_2; // in [−ln2/2, ln2/2]
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    let ni = y.to_bits().wrapping_sub(MAGIC.to_bits()); // round(t) as a two's-complement integer
    let scale = f32::from_bits(ni.wrapping_add(127) << 23);
    p * scale
}

/// erf via Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), branch-free so it vectorises.
#[inline(always)]
fn erf_as(z: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let az = z.abs();
    let t = 1.0 / (1.0 + P * az);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp_neg(-az * az)).copysign(z)
}

/// Exact-form GELU of one value, `x·Φ(x)`.
#[inline(always)]
fn gelu1(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_as(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `d GELU/dx = Φ(x) + x·φ(x)`.
#[inline(always)]
fn gelu_grad1(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf_as(x * std::f32::consts::FRAC_1_SQRT_2))
        + x * INV_SQRT_2PI * exp_neg(-0.5 * x * x)
}

#[inline(always)]
fn gelu_grad_mul_generic(g: &mut [f32], x: &[f32]) {
    for (g, &x) in g.iter_mut().zip(x) {
        *g *= gelu_grad1(x);
    }
}

dispatch_simd!(fn gelu_grad_mul_slice(g: &mut [f32], x: &[f32]) => gelu_grad_mul_generic);

/// `g ← g ⊙ GELU'(x)` (the backward of the exact GELU), on all rayon threads.
pub fn gelu_grad_mul(g: &mut [f32], x: &[f32]) {
    assert_eq!(g.len(), x.len(), "gelu_grad_mul lengths");
    g.par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(g, x)| gelu_grad_mul_slice(g, x));
}

#[inline(always)]
fn gelu_slice_generic(v: &mut [f32]) {
    for x in v {
        *x = gelu1(*x);
    }
}

dispatch_simd!(fn gelu_slice(v: &mut [f32]) => gelu_slice_generic);

#[inline(always)]
fn gelu_bias_rows_generic(v: &mut [f32], bias: &[f32]) {
    for row in v.chunks_exact_mut(bias.len()) {
        for (x, &b) in row.iter_mut().zip(bias) {
            *x = gelu1(*x + b);
        }
    }
}

dispatch_simd!(fn gelu_bias_rows(v: &mut [f32], bias: &[f32]) => gelu_bias_rows_generic);

/// Exact (erf) GELU in place, |error| ≤ 1e-6·max(1, |x|), on all rayon threads.
pub fn gelu_inplace(data: &mut [f32]) {
    data.par_chunks_mut(PAR_CHUNK).for_each(gelu_slice);
}

#[inline(always)]
fn gelu_copy_generic(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        d.write(gelu1(x));
    }
}

dispatch_simd!(fn gelu_copy(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32]) => gelu_copy_generic);

/// [`gelu_inplace`]'s values of `src` in a new buffer, in one pass (for an input that must stay
/// as it is, such as one saved for the backward: a copy then the in-place pass read and wrote
/// it twice).
pub fn gelu_to_vec(src: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(src.len());
    out.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(PAR_CHUNK)
        .zip(src.par_chunks(PAR_CHUNK))
        .for_each(|(d, s)| gelu_copy(d, s));
    // SAFETY: the chunks above wrote all `src.len()` elements.
    unsafe { out.set_len(src.len()) };
    out
}

/// `GELU(x + bias)` in place on the rows of `x [rows, bias.len()]` (the fc1 epilogue: the
/// bias joins the GELU pass instead of being written into the GEMM's output beforehand).
pub fn gelu_bias_inplace(x: &mut [f32], bias: Option<&[f32]>) {
    let Some(b) = bias else {
        return gelu_inplace(x);
    };
    assert!(
        !b.is_empty() && x.len().is_multiple_of(b.len()),
        "gelu_bias_inplace shapes"
    );
    let rows_per_task = (PAR_CHUNK / b.len()).max(1);
    x.par_chunks_mut(rows_per_task * b.len())
        .for_each(|rows| gelu_bias_rows(rows, b));
}

/// The per-step scalars of one AdamW (or L2-coupled Adam) update of one parameter, in f32 as
/// burn's scalar ops apply them (see [`adamw_inplace`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamCoeffs {
    /// β1 and 1 − β1.
    pub beta1: (f32, f32),
    /// β2 and 1 − β2.
    pub beta2: (f32, f32),
    /// L2 weight decay added to the gradient (torch `Adam(weight_decay)`); 0 for AdamW.
    pub coupled_wd: f32,
    /// AdamW's decoupled decay factor `1 − lr·wd` on the parameter; 1 when not decayed.
    pub decay: f32,
    /// `sqrt(1 − β2ᵗ)`.
    pub bc2_sqrt: f32,
    /// ε.
    pub eps: f32,
    /// `lr / (1 − β1ᵗ)`.
    pub step_size: f32,
}

#[inline(always)]
fn adamw_generic(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamCoeffs) {
    // The operation order of the tensor-op version (`fsvfm_train::optim`), one op per line
    // there; a missing moment is passed as zeros, which gives the same values as its first step.
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if c.coupled_wd != 0.0 {
            g + *p * c.coupled_wd
        } else {
            g
        };
        *m = *m * c.beta1.0 + g * c.beta1.1;
        *v = *v * c.beta2.0 + (g * g) * c.beta2.1;
        let denom = v.sqrt() / c.bc2_sqrt + c.eps;
        *p = *p * c.decay - (*m / denom) * c.step_size;
    }
}

dispatch_simd!(fn adamw_slice(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamCoeffs) => adamw_generic);

/// One AdamW update of a parameter `p` with gradient `g` and moments `m`, `v` (all `[numel]`),
/// in one pass on all rayon threads (torch `_single_tensor_adamw`: `m ← β1·m + (1−β1)·g`,
/// `v ← β2·v + (1−β2)·g²`, `p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + ε)`).
pub fn adamw_inplace(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &AdamCoeffs) {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adamw_inplace lengths"
    );
    p.par_chunks_mut(PAR_CHUNK)
        .zip(g.par_chunks(PAR_CHUNK))
        .zip(m.par_chunks_mut(PAR_CHUNK))
        .zip(v.par_chunks_mut(PAR_CHUNK))
        .for_each(|(((p, g), m), v)| adamw_slice(p, g, m, v, c));
}

#[inline(always)]
fn ema_generic(t: &mut [f32], o: &[f32], momentum: f32, one_minus: f32) {
    for (t, &o) in t.iter_mut().zip(o) {
        *t = *t * momentum + o * one_minus;
    }
}

dispatch_simd!(fn ema_slice(t: &mut [f32], o: &[f32], momentum: f32, one_minus: f32) => ema_generic);

/// `t ← m·t + (1 − m)·o` (the EMA of a target parameter `t` towards the online `o`), one pass
/// on all rayon threads; `one_minus` is `1 − m` rounded once, as the tensor-op version uses it.
pub fn ema_inplace(t: &mut [f32], o: &[f32], momentum: f32, one_minus: f32) {
    assert_eq!(t.len(), o.len(), "ema_inplace lengths");
    t.par_chunks_mut(PAR_CHUNK)
        .zip(o.par_chunks(PAR_CHUNK))
        .for_each(|(t, o)| ema_slice(t, o, momentum, one_minus));
}

/// `Σ x²` in f64 (a gradient-norm term), over `PAR_CHUNK`-sized chunks on all threads summed
/// in order (the same result whatever the thread count).
pub fn sum_squares(v: &[f32]) -> f64 {
    let parts: Vec<f64> = v
        .par_chunks(PAR_CHUNK)
        .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum())
        .collect();
    parts.iter().sum()
}

/// `v ← c·v` on all rayon threads.
pub fn scale_inplace(v: &mut [f32], c: f32) {
    v.par_chunks_mut(PAR_CHUNK)
        .for_each(|ch| ch.iter_mut().for_each(|x| *x *= c));
}

const LANES: usize = 16;

/// Values per parallel task of the element-wise and row-wise kernels (whole rows: at least one).
const PAR_CHUNK: usize = 16 * 1024;

/// Maximum of a slice with 16 independent accumulators, so the reduction vectorises.
#[inline(always)]
fn max_of(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            if c[i] > acc[i] {
                acc[i] = c[i];
            }
        }
    }
    rem.iter()
        .chain(acc.iter())
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// Sum of a slice with 16 independent accumulators (vectorises; order differs from a serial sum
/// only by float reassociation).
#[inline(always)]
fn sum_of(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    rem.iter().sum::<f32>() + acc.iter().sum::<f32>()
}

#[inline(always)]
fn softmax_rows_generic(s: &mut [f32], cols: usize, scale: f32, inv_sums: &mut [f32]) {
    for (row, inv) in s.chunks_exact_mut(cols).zip(inv_sums) {
        let max = max_of(row);
        for v in row.iter_mut() {
            *v = exp_neg((*v - max) * scale);
        }
        *inv = 1.0 / sum_of(row);
    }
}

dispatch_simd!(
    /// Row-wise `softmax(scale · s)` of a `[rows, cols]` matrix, in place, except the division
    /// by the row sums: their inverses go to `inv_sums [rows]`, to be applied to the (hd-wide)
    /// rows of `p · v` instead of the (T-wide) rows of `p`.
    fn softmax_rows(s: &mut [f32], cols: usize, scale: f32, inv_sums: &mut [f32]) => softmax_rows_generic
);

#[inline(always)]
fn softmax_backward_rows_generic(g: &mut [f32], y: &[f32], cols: usize) {
    for (g, y) in g.chunks_exact_mut(cols).zip(y.chunks_exact(cols)) {
        let mut acc = [0f32; LANES];
        let (gc, yc) = (g.chunks_exact(LANES), y.chunks_exact(LANES));
        let tail: f32 = gc
            .remainder()
            .iter()
            .zip(yc.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (a, b) in gc.zip(yc) {
            for i in 0..LANES {
                acc[i] += a[i] * b[i];
            }
        }
        let dot = tail + acc.iter().sum::<f32>();
        for (g, &y) in g.iter_mut().zip(y) {
            *g = y * (*g - dot);
        }
    }
}

dispatch_simd!(fn softmax_backward_rows(g: &mut [f32], y: &[f32], cols: usize) => softmax_backward_rows_generic);

/// Softmax over the last axis of `x [rows, cols]` in place, rows split across threads.
pub fn softmax_last_inplace(x: &mut [f32], cols: usize) {
    assert!(cols > 0 && x.len().is_multiple_of(cols), "softmax shapes");
    let rows_per_task = (PAR_CHUNK / cols).max(1);
    x.par_chunks_mut(rows_per_task * cols).for_each(|rows| {
        let mut inv = vec![0f32; rows.len() / cols];
        softmax_rows(rows, cols, 1.0, &mut inv);
        for (row, &s) in rows.chunks_exact_mut(cols).zip(&inv) {
            for v in row {
                *v *= s;
            }
        }
    });
}

/// The backward of [`softmax_last_inplace`]: `g ← y ⊙ (g − Σ_row g ⊙ y)` per row of `cols`,
/// with `y` the softmax output and `g` the gradient of the output.
pub fn softmax_last_backward(g: &mut [f32], y: &[f32], cols: usize) {
    assert!(
        cols > 0 && g.len() == y.len() && g.len().is_multiple_of(cols),
        "softmax backward shapes"
    );
    let chunk = (PAR_CHUNK / cols).max(1) * cols;
    g.par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk))
        .for_each(|(g, y)| softmax_backward_rows(g, y, cols));
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, or `+=` with `accumulate`: row-major `dst` and `lhs` with the
/// given row strides (unit column strides), `rhs` with explicit row/column strides, via the `gemm`
/// crate (its AVX-512 kernels are picked at run time).
///
/// # Safety
/// Every element the strides address must lie in memory valid for the access (`dst` writable).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rows(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (lhs, lhs_rs): (*const f32, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm_strided(
            (m, n, k),
            (dst, dst_rs),
            accumulate,
            (lhs, lhs_rs as isize, 1),
            (rhs, rhs_rs as isize, rhs_cs as isize),
            parallelism,
        )
    }
}

/// `gemm_rows` with any strides for both operands (`(pointer, row stride, column stride)`,
/// in elements): transposed views are read in place, the `gemm` crate packs them anyway.
///
/// # Safety
/// As `gemm_rows`.
pub unsafe fn gemm_strided(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (*const f32, isize, isize),
    (rhs, rhs_rs, rhs_cs): (*const f32, isize, isize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// [`gemm_strided`] on every thread by cutting the output into one block of rows per thread
/// (of columns when it has more columns than rows), each a single-threaded GEMM; below burn
/// flex's threshold (192³ multiply-adds) one thread does it all.
///
/// Why not the `gemm` crate's own threading: it synchronises its threads on every K block, which
/// costs most where K is long and the output small, i.e. the weight gradients `xᵀ·g` of training
/// (K = tokens). ViT-S shapes at 1576 tokens on 2 cores, best of 25 interleaved runs (GFLOP/s,
/// crate's threading → blocks): `dw` 163–226 → 217–258, `dx` 217–311 → 219–304, forward equal.
///
/// Every element sums over K in the same order whatever the blocks (the crate's K blocking
/// depends on `k` alone), so the result does not depend on the thread count.
///
/// # Safety
/// As [`gemm_strided`].
pub unsafe fn gemm_blocks(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (*const f32, isize, isize),
    (rhs, rhs_rs, rhs_cs): (*const f32, isize, isize),
) {
    let threads = match gemm_parallelism_for(m, n, k) {
        gemm::Parallelism::Rayon(t) => t,
        _ => 1,
    };
    let rows = m >= n;
    let len = if rows { m } else { n };
    // Blocks of at least 32 rows/columns keep every block on the crate's full-size kernels.
    let parts = threads.min(len / 32).max(1);
    let one = gemm::Parallelism::None;
    if parts == 1 {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            gemm_strided(
                (m, n, k),
                (dst, dst_rs),
                accumulate,
                (lhs, lhs_rs, lhs_cs),
                (rhs, rhs_rs, rhs_cs),
                one,
            )
        };
        return;
    }
    let chunk = len.div_ceil(parts);
    // Raw pointers are not `Send`; the blocks write disjoint parts of `dst`.
    let (dst, lhs, rhs) = (dst as usize, lhs as usize, rhs as usize);
    (0..parts).into_par_iter().for_each(|p| {
        let (start, end) = (p * chunk, ((p + 1) * chunk).min(len));
        if start >= end {
            return;
        }
        let (dst, lhs, rhs) = (dst as *mut f32, lhs as *const f32, rhs as *const f32);
        // SAFETY: block `p` covers rows (columns) `start..end` of the output and reads the same
        // rows of `lhs` (columns of `rhs`): in bounds by the caller's contract, disjoint writes.
        unsafe {
            if rows {
                gemm_strided(
                    (end - start, n, k),
                    (dst.add(start * dst_rs), dst_rs),
                    accumulate,
                    (lhs.offset(start as isize * lhs_rs), lhs_rs, lhs_cs),
                    (rhs, rhs_rs, rhs_cs),
                    one,
                );
            } else {
                gemm_strided(
                    (m, end - start, k),
                    (dst.add(start), dst_rs),
                    accumulate,
                    (lhs, lhs_rs, lhs_cs),
                    (rhs.offset(start as isize * rhs_cs), rhs_rs, rhs_cs),
                    one,
                );
            }
        }
    });
}

/// Threads for a GEMM of `m·n·k` multiply-adds from the training ops: one below burn flex's
/// threshold (192³, where splitting costs more than it gains), else as `gemm_parallelism`.
pub fn gemm_parallelism_for(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) < 192 * 192 * 192 {
        return gemm::Parallelism::None;
    }
    gemm_parallelism()
}

/// Column sums of `g [rows, cols]` (a bias gradient), in a fixed order whatever the thread
/// count: blocks of 64 rows summed in parallel, then the block sums in sequence.
pub fn column_sums(g: &[f32], cols: usize) -> Vec<f32> {
    assert!(
        cols > 0 && g.len().is_multiple_of(cols),
        "column_sums shape"
    );
    let partial: Vec<Vec<f32>> = g
        .par_chunks(64 * cols)
        .map(|block| {
            let mut acc = vec![0.0f32; cols];
            for row in block.chunks_exact(cols) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += x;
                }
            }
            acc
        })
        .collect();
    let mut out = vec![0.0f32; cols];
    for p in partial {
        for (o, x) in out.iter_mut().zip(p) {
            *o += x;
        }
    }
    out
}

/// Multi-head self-attention from the fused projection: `qkv [N, T, 3D]` → `out [N, T, D]`,
/// `softmax(q kᵀ / √hd) v` per head with `hd = D / heads`.
pub fn attention_from_qkv(qkv: &[f32], n: usize, t: usize, d: usize, heads: usize) -> Vec<f32> {
    let mut out = Vec::new();
    attention_into(&mut out, qkv, n, t, d, heads);
    out
}

thread_local! {
    /// Per-thread `[T, T]` scores and `[T]` inverse row sums of [`attention_into`] (reused:
    /// nothing inside a job re-enters it on the same thread).
    static SCORES: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// [`attention_from_qkv`] into `out` (its allocation reused).
fn attention_into(out: &mut Vec<f32>, qkv: &[f32], n: usize, t: usize, d: usize, heads: usize) {
    assert_eq!(qkv.len(), n * t * 3 * d, "qkv buffer size");
    assert!(heads > 0 && d.is_multiple_of(heads), "heads must divide D");
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    // Not zeroed: the second GEMM of the (sample, head) jobs writes every element (read_dst false),
    // and the jobs tile [N, T, D] exactly; the length is set once they are done.
    out.clear();
    out.reserve(n * t * d);
    // Raw addresses so tasks for different heads can write disjoint columns of one sample.
    let out_addr = out.as_mut_ptr() as usize;
    // The two products on the tiles only on request (`FSVFM_AMX_ATTENTION=1`): measured, they
    // do not pay at ViT shapes (head width 32–64: the softmax and the bf16 conversions of q, k,
    // v and p cost what the tiles save; `examples/amx_gemm.rs`, `BENCHMARKS.md`).
    let amx_attention = precision() == Precision::Bf16 && crate::amx::attention_on_tiles();
    (0..n * heads).into_par_iter().for_each(|job| {
        let (b, h) = (job / heads, job % heads);
        let base = qkv[b * t * 3 * d..].as_ptr();
        SCORES.with(|cell| {
            let (scores, inv) = &mut *cell.borrow_mut();
            scores.resize(t * t, 0.0);
            inv.resize(t, 0.0);
            // SAFETY: all reads stay inside sample b's [T, 3D] slice; the writes cover rows of
            // sample b and columns [h·hd, (h+1)·hd), disjoint across jobs; `out` has capacity
            // for [N, T, D] and outlives the loop.
            unsafe {
                let q = base.add(h * hd);
                let k = base.add(d + h * hd);
                let v = base.add(2 * d + h * hd);
                let dst = (out_addr as *mut f32).add(b * t * d + h * hd);
                if amx_attention {
                    // Both products on the AMX tiles (bf16 inputs, fp32 accumulation).
                    let softmax = |s: &mut [f32], inv: &mut [f32]| softmax_rows(s, t, scale, inv);
                    let (row, io) = (3 * d, (dst, d));
                    crate::amx::attention_head((q, k, v), row, (t, hd), scores, inv, softmax, io);
                    return;
                }
                // scores[T, T] = q[T, hd] · kᵀ[hd, T] (kᵀ: row stride 1, column stride 3D).
                let row = 3 * d;
                gemm_rows(
                    (t, t, hd),
                    (scores.as_mut_ptr(), t),
                    false,
                    (q, row),
                    (k, 1, row),
                    gemm::Parallelism::None,
                );
                softmax_rows(scores, t, scale, inv);
                // out[T, hd] = e[T, T] · v[T, hd], written with row stride D, then each row
                // divided by its softmax sum.
                gemm_rows(
                    (t, hd, t),
                    (dst, d),
                    false,
                    (scores.as_ptr(), t),
                    (v, row, 1),
                    gemm::Parallelism::None,
                );
                for (i, &s) in inv.iter().enumerate() {
                    for c in std::slice::from_raw_parts_mut(dst.add(i * d), hd) {
                        *c *= s;
                    }
                }
            }
        });
    });
    // SAFETY: all n·t·d elements were written by the jobs above (see the reservation).
    unsafe { out.set_len(n * t * d) };
}

thread_local! {
    /// Per-thread `[T, T]` probabilities and their gradient, and `[T]` inverse row sums, of
    /// [`attention_backward`].
    static ATTN_GRAD: std::cell::RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

/// The backward of [`attention_from_qkv`]: from `qkv [N, T, 3D]` and the output gradient
/// `d_out [N, T, D]`, the gradient of `qkv` (same layout). Per (sample, head), with the
/// probabilities recomputed instead of stored (as flash attention does; they are `[N, H, T, T]`):
/// `P = softmax(s·q kᵀ)`, `dv = Pᵀ dO`, `dP = dO vᵀ`, `dS = s · P ⊙ (dP − Σ_j dP ⊙ P)`,
/// `dq = dS k`, `dk = dSᵀ q`.
pub fn attention_backward(
    qkv: &[f32],
    d_out: &[f32],
    n: usize,
    t: usize,
    d: usize,
    heads: usize,
) -> Vec<f32> {
    assert_eq!(qkv.len(), n * t * 3 * d, "qkv buffer size");
    assert_eq!(d_out.len(), n * t * d, "output gradient size");
    assert!(heads > 0 && d.is_multiple_of(heads), "heads must divide D");
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    // Not zeroed: the jobs' three GEMMs with read_dst false tile [N, T, 3D] exactly.
    let mut grad = Vec::<f32>::with_capacity(n * t * 3 * d);
    let grad_addr = grad.as_mut_ptr() as usize;
    (0..n * heads).into_par_iter().for_each(|job| {
        let (b, h) = (job / heads, job % heads);
        let base = qkv[b * t * 3 * d..].as_ptr();
        let dout = d_out[b * t * d + h * hd..].as_ptr();
        ATTN_GRAD.with(|cell| {
            let (p, dp, inv) = &mut *cell.borrow_mut();
            p.resize(t * t, 0.0);
            dp.resize(t * t, 0.0);
            inv.resize(t, 0.0);
            let (row, tt) = (3 * d as isize, t as isize);
            let none = gemm::Parallelism::None;
            // SAFETY: reads stay inside sample b's [T, 3D] slice of `qkv` and [T, D] slice of
            // `d_out`; the writes cover sample b's rows and columns h·hd.. of each of the three
            // parts, disjoint across jobs; `grad` has capacity for [N, T, 3D] and outlives the
            // loop.
            unsafe {
                let (q, k, v) = (
                    base.add(h * hd),
                    base.add(d + h * hd),
                    base.add(2 * d + h * hd),
                );
                let dst = (grad_addr as *mut f32).add(b * t * 3 * d + h * hd);
                gemm_strided(
                    (t, t, hd),
                    (p.as_mut_ptr(), t),
                    false,
                    (q, row, 1),
                    (k, 1, row),
                    none,
                );
                softmax_rows(p, t, scale, inv);
                for (r, &s) in p.chunks_exact_mut(t).zip(inv.iter()) {
                    r.iter_mut().for_each(|x| *x *= s);
                }
                // dv = Pᵀ · dO
                let (pp, dpp) = (p.as_ptr(), dp.as_mut_ptr());
                gemm_strided(
                    (t, hd, t),
                    (dst.add(2 * d), 3 * d),
                    false,
                    (pp, 1, tt),
                    (dout, d as isize, 1),
                    none,
                );
                // dP = dO · vᵀ, then dS
                gemm_strided(
                    (t, t, hd),
                    (dpp, t),
                    false,
                    (dout, d as isize, 1),
                    (v, 1, row),
                    none,
                );
                softmax_backward_rows(dp, p, t);
                dp.iter_mut().for_each(|x| *x *= scale);
                let dsp = dp.as_ptr();
                // dq = dS · k, dk = dSᵀ · q
                gemm_strided(
                    (t, hd, t),
                    (dst, 3 * d),
                    false,
                    (dsp, tt, 1),
                    (k, row, 1),
                    none,
                );
                gemm_strided(
                    (t, hd, t),
                    (dst.add(d), 3 * d),
                    false,
                    (dsp, 1, tt),
                    (q, row, 1),
                    none,
                );
            }
        });
    });
    // SAFETY: all n·t·3d elements were written by the jobs above.
    unsafe { grad.set_len(n * t * 3 * d) };
    grad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Taylor series (|x| ≤ 3) or the leading asymptotic term of erfc beyond, in f64
    /// (an independent reference for the f32 approximation).
    fn erf_ref(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) ~ e^{-x²}/(x√π) (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶)) is < 1e-12 here anyway.
            return x.signum() * (1.0 - (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()));
        }
        let mut term = x;
        let mut sum = x;
        for k in 1..200 {
            term *= -x * x / k as f64;
            sum += term / (2 * k + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// The per-thread blocks give the single-threaded GEMM's result bit for bit at any thread
    /// count (the property exact resume on another `--threads` relies on), for row blocks with a
    /// transposed left operand (a weight gradient `xᵀ·g`) and column blocks, written or
    /// accumulated.
    #[test]
    fn gemm_blocks_equal_one_thread_bit_for_bit() {
        let wave = |len: usize, f: f32| -> Vec<f32> {
            (0..len)
                .map(|i| ((i as f32 * f).sin() * 1.7).fract())
                .collect()
        };
        // (m, n, k, lhs transposed)
        for (m, n, k, ta) in [(384, 200, 400, true), (100, 300, 90, false)] {
            let (a, b) = (wave(m * k, 0.37), wave(k * n, 0.11));
            let (lrs, lcs) = if ta { (1, m as isize) } else { (k as isize, 1) };
            let start = wave(m * n, 0.05);
            for accumulate in [false, true] {
                let run = |blocks: bool, threads: usize| {
                    let mut out = start.clone();
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    // SAFETY: `out` is m × n, `a` m × k (or k × m transposed) and `b` k × n,
                    // with the strides given: every access stays inside the three buffers.
                    pool.install(|| unsafe {
                        let args = (
                            (m, n, k),
                            (out.as_mut_ptr(), n),
                            accumulate,
                            (a.as_ptr(), lrs, lcs),
                            (b.as_ptr(), n as isize, 1),
                        );
                        if blocks {
                            gemm_blocks(args.0, args.1, args.2, args.3, args.4);
                        } else {
                            gemm_strided(
                                args.0,
                                args.1,
                                args.2,
                                args.3,
                                args.4,
                                gemm::Parallelism::None,
                            );
                        }
                    });
                    out
                };
                let one = run(false, 1);
                let naive: f32 = (0..k)
                    .map(|i| {
                        let x = if ta { a[i * m + 3] } else { a[3 * k + i] };
                        x * b[i * n + 5]
                    })
                    .sum::<f32>()
                    + if accumulate { start[3 * n + 5] } else { 0.0 };
                assert!((one[3 * n + 5] - naive).abs() < 1e-3, "reference GEMM");
                for threads in [2, 3, 4] {
                    assert!(
                        run(true, threads) == one,
                        "{m}x{n}x{k} on {threads} threads"
                    );
                }
            }
        }
    }

    #[test]
    fn gelu_into_a_new_buffer_equals_gelu_in_place() {
        let x: Vec<f32> = (0..3 * PAR_CHUNK + 77)
            .map(|i| (i as f32 * 0.013).sin() * 6.0)
            .collect();
        let mut want = x.clone();
        gelu_inplace(&mut want);
        assert!(gelu_to_vec(&x) == want);
        assert_eq!(
            x[5],
            (5.0f32 * 0.013).sin() * 6.0,
            "the input is left as it was"
        );
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.005).collect();
        let mut ys = xs.clone();
        gelu_inplace(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = 0.5 * x as f64 * (1.0 + erf_ref(x as f64 / 2f64.sqrt()));
            let err = (y as f64 - want).abs();
            assert!(
                err <= 1e-6 * (x.abs() as f64).max(1.0),
                "gelu({x}) = {y}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_gradient_matches_the_derivative() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.005).collect();
        let mut g = vec![1f32; xs.len()];
        gelu_grad_mul(&mut g, &xs);
        for (&x, &d) in xs.iter().zip(&g) {
            let x64 = x as f64;
            let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = 0.5 * (1.0 + erf_ref(x64 / 2f64.sqrt())) + x64 * pdf;
            assert!(
                (d as f64 - want).abs() <= 1e-6,
                "gelu'({x}) = {d}, want {want}"
            );
        }
    }

    #[test]
    fn softmax_and_its_backward_match_naive_references() {
        let (rows, cols) = (40, 37);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 17 % 29) as f32 - 14.0) / 3.0)
            .collect();
        let g: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let mut y = x.clone();
        softmax_last_inplace(&mut y, cols);
        let mut dx = g.clone();
        softmax_last_backward(&mut dx, &y, cols);
        for r in 0..rows {
            let xr: Vec<f64> = x[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let m = xr.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = xr.iter().map(|v| (v - m).exp()).sum();
            let yr: Vec<f64> = xr.iter().map(|v| (v - m).exp() / z).collect();
            let dot: f64 = (0..cols).map(|j| g[r * cols + j] as f64 * yr[j]).sum();
            for j in 0..cols {
                assert!((y[r * cols + j] as f64 - yr[j]).abs() < 1e-6, "y[{r},{j}]");
                let want = yr[j] * (g[r * cols + j] as f64 - dot);
                assert!((dx[r * cols + j] as f64 - want).abs() < 1e-6, "dx[{r},{j}]");
            }
        }
    }

    #[test]
    fn gelu_with_bias_equals_gelu_of_the_sum() {
        let (rows, n) = (300, 70); // several tasks, a width that is not a lane multiple
        let x: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 13 % 61) as f32 - 30.0) / 8.0)
            .collect();
        let b: Vec<f32> = (0..n).map(|j| j as f32 / 20.0 - 1.5).collect();
        let mut got = x.clone();
        gelu_bias_inplace(&mut got, Some(&b));
        let mut want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + b[i % n]).collect();
        gelu_inplace(&mut want);
        assert_eq!(got, want);
    }

    #[test]
    fn exp_is_accurate_on_the_softmax_range() {
        for i in 0..=10_000 {
            let x = -(i as f32) * 0.008;
            let rel = ((exp_neg(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            let bound = 3e-7 + 1e-7 * x.abs() as f64;
            assert!(rel < bound, "exp({x}): rel err {rel} > {bound}");
        }
        assert!(exp_neg(-1000.0).is_finite());
    }

    #[test]
    fn layer_norm_and_linear_match_naive_references() {
        let (rows, d) = (130, 40); // more rows than one task, a width that is not a lane multiple
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 29 % 83) as f32 - 41.0) / 9.0)
            .collect();
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 40.0).collect();
        let beta: Vec<f32> = (0..d).map(|i| i as f32 / 10.0 - 2.0).collect();
        for b in [None, Some(beta.as_slice())] {
            let y = layer_norm(&x, d, &gamma, b, 1e-6);
            for (r, (xr, yr)) in x.chunks(d).zip(y.chunks(d)).enumerate() {
                let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                for i in 0..d {
                    let want = (xr[i] as f64 - mean) / (var + 1e-6).sqrt() * gamma[i] as f64
                        + b.map_or(0.0, |b| b[i] as f64);
                    assert!((yr[i] as f64 - want).abs() < 1e-5, "row {r} col {i}");
                }
            }
        }
        let (m, k, n) = (7, 5, 3);
        let w: Vec<f32> = (0..k * n).map(|i| i as f32 * 0.1 - 0.7).collect();
        let bias = [1.0, -2.0, 0.5];
        let xs: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let mut res: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
        let lin = linear(&xs, &w, Some(&bias), m, k, n);
        linear_residual(&mut res, &xs, &w, Some(&bias), m, k, n);
        for i in 0..m {
            for j in 0..n {
                let want = (0..k).map(|c| xs[i * k + c] * w[c * n + j]).sum::<f32>() + bias[j];
                assert!((lin[i * n + j] - want).abs() < 1e-5);
                assert!((res[i * n + j] - want - (i * n + j) as f32).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn attention_matches_a_naive_reference() {
        let (n, t, d, heads) = (2, 5, 8, 2);
        let qkv: Vec<f32> = (0..n * t * 3 * d)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let got = attention_from_qkv(&qkv, n, t, d, heads);
        let hd = d / heads;
        for b in 0..n {
            for h in 0..heads {
                let at = |i: usize, part: usize, c: usize| {
                    qkv[(b * t + i) * 3 * d + part * d + h * hd + c] as f64
                };
                for i in 0..t {
                    let s: Vec<f64> = (0..t)
                        .map(|j| {
                            (0..hd).map(|c| at(i, 0, c) * at(j, 1, c)).sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                    for c in 0..hd {
                        let want: f64 = (0..t).map(|j| (s[j] - m).exp() / z * at(j, 2, c)).sum();
                        let g = got[(b * t + i) * d + h * hd + c] as f64;
                        assert!(
                            (g - want).abs() < 1e-5,
                            "b{b} h{h} i{i} c{c}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Set while this thread runs a share of the batch on its own ([`split_batch`]).
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on each of `parts` (disjoint shares of a batch), one rayon task each, with the big
/// GEMMs inside single-threaded: with as many equal shares as threads, the threads never wait
/// for each other inside a block (no fork/join per GEMM, no shared packing).
pub fn split_batch<T: Send, F: Fn(T) + Sync>(parts: Vec<T>, f: F) {
    parts.into_par_iter().for_each(|p| {
        let before = SERIAL.with(|s| s.replace(true));
        f(p);
        SERIAL.with(|s| s.set(before));
    });
}

/// Threads for the big GEMMs: rayon's pool (`--threads`), as burn flex uses; one inside
/// [`split_batch`].
pub(crate) fn gemm_threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// [`gemm_threads`] as the `gemm` crate's parallelism.
fn gemm_parallelism() -> gemm::Parallelism {
    match gemm_threads() {
        1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// `dst[m, n] += x[m, k] · w[k, n]` (row-major; `w` in burn's Linear layout `[d_in, d_out]`).
pub fn matmul_acc(dst: &mut [f32], x: &[f32], w: &[f32], m: usize, k: usize, n: usize) {
    assert!(
        dst.len() == m * n && x.len() == m * k && w.len() == k * n,
        "matmul_acc shapes"
    );
    // SAFETY: the three buffers have exactly the sizes the strides describe (checked above).
    unsafe { gemm_xw(dst.as_mut_ptr(), true, x, w, (m, k, n)) }
}

/// `dst[m, n] (+)= x[m, k] · w[k, n]` on the big-GEMM threads, row-major, `w` in burn's Linear
/// layout; `accumulate` false writes `dst` without reading it.
///
/// # Safety
/// `x` holds m·k and `w` k·n values; `dst` is valid for m·n writes (and reads if accumulating).
unsafe fn gemm_xw(
    dst: *mut f32,
    accumulate: bool,
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm_rows(
            (m, n, k),
            (dst, n),
            accumulate,
            (x.as_ptr(), k),
            (w.as_ptr(), n, 1),
            gemm_parallelism(),
        );
    }
}

/// `out ← [m, n]` rows each set to `bias` (or zeros), filled on all threads, reusing `out`'s
/// allocation; with a bias the buffer is written once, not zeroed first (at ViT shapes that
/// zeroing was ~3 % of the forward).
pub(crate) fn rows_into(out: &mut Vec<f32>, bias: Option<&[f32]>, m: usize, n: usize) {
    out.clear();
    let Some(b) = bias else {
        out.resize(m * n, 0.0);
        return;
    };
    assert_eq!(b.len(), n, "bias length");
    out.reserve(m * n);
    out.spare_capacity_mut()[..m * n]
        .par_chunks_mut(n)
        .for_each(|row| {
            for (dst, &x) in row.iter_mut().zip(b) {
                dst.write(x);
            }
        });
    // SAFETY: every one of the m·n elements was written just above.
    unsafe { out.set_len(m * n) };
}

/// Numeric precision of the inference kernels' linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 everywhere (the default: the parity tests' ≤ 1e-4).
    Fp32,
    /// The four linear layers of each block (qkv, proj, fc1, fc2; ~90 % of a ViT's FLOPs) take
    /// bf16 inputs and weights with fp32 accumulation ([`crate::bf16_gemm`]); on AMX under
    /// `FSVFM_AMX_ATTENTION=1` the two attention products too. Softmax, LayerNorm, GELU,
    /// residuals and everything outside the blocks (patch embedding, pooling, heads) stay fp32.
    Bf16,
}

static BF16: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Selects the precision of the inference kernels for the whole process. Returns the precision
/// in effect: bf16 needs AMX or AVX-512 BF16 ([`crate::bf16_gemm::path`]), else fp32 stays.
pub fn set_precision(p: Precision) -> Precision {
    let on = p == Precision::Bf16 && crate::bf16_gemm::available();
    BF16.store(on, std::sync::atomic::Ordering::Relaxed);
    precision()
}

/// The precision in effect.
pub fn precision() -> Precision {
    if BF16.load(std::sync::atomic::Ordering::Relaxed) {
        Precision::Bf16
    } else {
        Precision::Fp32
    }
}

/// Which GEMM runs the blocks' linear layers: `"fp32"`, or the bf16 [`crate::bf16_gemm::Path`]'s
/// name (what `--precision bf16` reports on stderr and `fsvfm bench` in its JSON).
pub fn gemm_name() -> &'static str {
    match (precision(), crate::bf16_gemm::path()) {
        (Precision::Bf16, Some(path)) => path.name(),
        _ => "fp32",
    }
}

static FROZEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Declares that no model of this process changes its weights after its first forward (the
/// inference commands: `predict`, `eval`, `forward`, `bench`). In bf16 each block's weights are
/// then packed once and reused by every later forward instead of per forward.
pub fn set_frozen_weights(on: bool) {
    FROZEN.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`set_frozen_weights`] is on.
pub fn frozen_weights() -> bool {
    FROZEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// `dst += x · w` in the precision in effect (`packed`: `w` already packed for bf16).
fn matmul_acc_in_precision(
    dst: &mut [f32],
    x: &[f32],
    w: &[f32],
    packed: Option<&crate::bf16_gemm::PackedB>,
    m: usize,
    k: usize,
    n: usize,
) {
    match (packed, precision()) {
        (Some(p), _) => {
            assert_eq!(p.shape(), (k, n), "packed weight shape");
            crate::bf16_gemm::matmul_acc_bf16(dst, x, p, m)
        }
        (None, Precision::Bf16) => {
            let p = crate::bf16_gemm::PackedB::pack(w, k, n);
            crate::bf16_gemm::matmul_acc_bf16(dst, x, &p, m);
        }
        (None, Precision::Fp32) => matmul_acc(dst, x, w, m, k, n),
    }
}

/// `x[m, k] · w[k, n] + bias` as a new `[m, n]` buffer (bias folded in as the GEMM's initial value).
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut out = Vec::new();
    linear_into(&mut out, x, w, None, bias, m, k, n);
    out
}

/// `out ← x[m, k] · w[k, n]` without bias, reusing `out`'s allocation; in fp32 the GEMM writes
/// `out` without reading it (no zero fill first).
fn matmul_into(
    out: &mut Vec<f32>,
    x: &[f32],
    w: &[f32],
    packed: Option<&crate::bf16_gemm::PackedB>,
    (m, k, n): (usize, usize, usize),
) {
    out.clear();
    if let Some(p) = packed {
        assert_eq!(p.shape(), (k, n), "packed weight shape");
        return crate::bf16_gemm::matmul_set_bf16(out, x, p, m);
    }
    if precision() == Precision::Bf16 || k == 0 {
        out.resize(m * n, 0.0);
        return matmul_acc_in_precision(out, x, w, packed, m, k, n);
    }
    assert!(x.len() == m * k && w.len() == k * n, "matmul_into shapes");
    out.reserve(m * n);
    // SAFETY: `x` and `w` have the sizes the strides describe; `out` has capacity m·n, and a
    // GEMM with k > 0 and read_dst false writes every element of it before the length is set.
    unsafe {
        gemm_xw(out.as_mut_ptr(), false, x, w, (m, k, n));
        out.set_len(m * n);
    }
}

/// [`linear`] into `out` (its allocation reused), with `w` optionally pre-packed for bf16.
#[allow(clippy::too_many_arguments)]
fn linear_into(
    out: &mut Vec<f32>,
    x: &[f32],
    w: &[f32],
    packed: Option<&crate::bf16_gemm::PackedB>,
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) {
    rows_into(out, bias, m, n);
    matmul_acc_in_precision(out, x, w, packed, m, k, n);
}

/// `dst += x · w + bias` in place (the residual branch add folded into the GEMM).
pub fn linear_residual(
    dst: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) {
    linear_residual_packed(dst, x, w, None, bias, m, k, n)
}

/// [`linear_residual`] with `w` optionally pre-packed for bf16.
#[allow(clippy::too_many_arguments)]
fn linear_residual_packed(
    dst: &mut [f32],
    x: &[f32],
    w: &[f32],
    packed: Option<&crate::bf16_gemm::PackedB>,
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) {
    if let Some(b) = bias {
        dst.par_chunks_mut(n).for_each(|row| {
            for (d, b) in row.iter_mut().zip(b) {
                *d += b;
            }
        });
    }
    matmul_acc_in_precision(dst, x, w, packed, m, k, n);
}

/// Σ (v − mean)² with 16 independent accumulators (vectorises).
#[inline(always)]
fn sum_sq_dev(v: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            let e = c[i] - mean;
            acc[i] += e * e;
        }
    }
    rem.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() + acc.iter().sum::<f32>()
}

#[inline(always)]
fn layer_norm_rows_generic(
    x: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
    d: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
) {
    for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = sum_of(xr) / d as f32;
        let var = sum_sq_dev(xr, mean) / d as f32; // biased, as torch's LayerNorm
        let inv = 1.0 / (var + eps).sqrt();
        match beta {
            Some(b) => {
                for i in 0..d {
                    yr[i].write((xr[i] - mean) * inv * gamma[i] + b[i]);
                }
            }
            None => {
                for i in 0..d {
                    yr[i].write((xr[i] - mean) * inv * gamma[i]);
                }
            }
        }
    }
}

dispatch_simd!(fn layer_norm_rows(x: &[f32], out: &mut [std::mem::MaybeUninit<f32>], d: usize, gamma: &[f32], beta: Option<&[f32]>, eps: f32) => layer_norm_rows_generic);

/// LayerNorm over the last axis of `x [rows, d]` (two-pass variance), rows split across threads.
pub fn layer_norm(x: &[f32], d: usize, gamma: &[f32], beta: Option<&[f32]>, eps: f32) -> Vec<f32> {
    let mut out = Vec::new();
    layer_norm_into(&mut out, x, d, gamma, beta, eps);
    out
}

/// [`layer_norm`] into `out` (its allocation reused).
fn layer_norm_into(
    out: &mut Vec<f32>,
    x: &[f32],
    d: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
) {
    assert!(
        gamma.len() == d && beta.is_none_or(|b| b.len() == d) && x.len().is_multiple_of(d),
        "layer_norm shapes"
    );
    out.clear();
    out.reserve(x.len());
    let rows_per_task = 64;
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(rows_per_task * d)
        .zip(x.par_chunks(rows_per_task * d))
        .for_each(|(o, xi)| layer_norm_rows(xi, o, d, gamma, beta, eps));
    // SAFETY: `layer_norm_rows` wrote every element of every row.
    unsafe { out.set_len(x.len()) };
}

#[inline(always)]
fn layer_norm_grad_rows_generic(
    x: &[f32],
    g: &[f32],
    dx: &mut [f32],
    (dgamma, dbeta): (&mut [f32], &mut [f32]),
    gamma: &[f32],
    eps: f32,
) {
    let d = gamma.len();
    for ((xr, gr), dxr) in x
        .chunks_exact(d)
        .zip(g.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        // The forward's statistics, recomputed (two-pass variance, as `layer_norm_rows`).
        let mean = sum_of(xr) / d as f32;
        let inv = 1.0 / (sum_sq_dev(xr, mean) / d as f32 + eps).sqrt();
        let (mut sum_gg, mut sum_ggx) = (0.0f32, 0.0f32);
        for i in 0..d {
            let xhat = (xr[i] - mean) * inv;
            let gg = gr[i] * gamma[i];
            sum_gg += gg;
            sum_ggx += gg * xhat;
            dgamma[i] += gr[i] * xhat;
            dbeta[i] += gr[i];
        }
        let (m1, m2) = (sum_gg / d as f32, sum_ggx / d as f32);
        for i in 0..d {
            let xhat = (xr[i] - mean) * inv;
            dxr[i] = inv * (gr[i] * gamma[i] - m1 - xhat * m2);
        }
    }
}

dispatch_simd!(fn layer_norm_grad_rows(x: &[f32], g: &[f32], dx: &mut [f32], dgb: (&mut [f32], &mut [f32]), gamma: &[f32], eps: f32) => layer_norm_grad_rows_generic);

/// The backward of [`layer_norm`] over rows of `x [rows, d]` with output gradient `g`:
/// `(dx, dγ, dβ)` with `x̂ = (x − μ)·σ⁻¹`, `dx = σ⁻¹ (g γ − mean(g γ) − x̂ · mean(g γ x̂))`,
/// `dγ = Σ_rows g x̂`, `dβ = Σ_rows g`. Rows in blocks of 64 on all threads; the parameter
/// gradients are summed block by block in order (the same result whatever the thread count).
pub fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = gamma.len();
    assert!(
        d > 0 && x.len() == g.len() && x.len().is_multiple_of(d),
        "layer_norm_backward shapes"
    );
    let block = 64 * d;
    let mut dx = vec![0.0f32; x.len()];
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block).zip(g.par_chunks(block)))
        .map(|(dx, (x, g))| {
            let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
            layer_norm_grad_rows(x, g, dx, (&mut dgamma, &mut dbeta), gamma, eps);
            (dgamma, dbeta)
        })
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
    for (pg, pb) in partial {
        dgamma.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dx, dgamma, dbeta)
}

/// A read-only f32 buffer for the kernels: owned, or a view of a burn flex tensor's storage
/// (the parameters of a loaded model: read in place, no copy per forward).
#[derive(Clone, Debug)]
pub enum HostBuf {
    /// Values owned here.
    Owned(Vec<f32>),
    /// A contiguous f32 flex tensor (checked by [`HostBuf::view`]); holding it keeps the shared
    /// storage alive, and burn copies on write, so the view never changes under the kernels.
    Flex(burn::backend::flex::FlexTensor),
}

impl HostBuf {
    /// A view of `t` when it is a contiguous f32 flex tensor, else `None`.
    pub fn view(t: burn::backend::flex::FlexTensor) -> Option<Self> {
        t.as_slice::<f32>().is_some().then_some(Self::Flex(t))
    }
}

impl std::ops::Deref for HostBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Self::Owned(v) => v,
            Self::Flex(t) => t
                .as_slice::<f32>()
                .expect("HostBuf::view checked the layout"),
        }
    }
}

impl From<Vec<f32>> for HostBuf {
    fn from(v: Vec<f32>) -> Self {
        Self::Owned(v)
    }
}

/// One pre-LN transformer block's parameters for the kernels (burn layouts: Linear `[in, out]`).
#[derive(Clone, Debug)]
pub struct HostBlock {
    /// Width D.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width.
    pub hidden: usize,
    /// LayerNorm eps of both norms.
    pub eps: f32,
    /// `norm1` weight and bias `[D]`.
    pub norm1: (HostBuf, Option<HostBuf>),
    /// `attn.qkv` weight `[D, 3D]` and bias `[3D]`.
    pub qkv: (HostBuf, Option<HostBuf>),
    /// `attn.proj` weight `[D, D]` and bias.
    pub proj: (HostBuf, Option<HostBuf>),
    /// `norm2`.
    pub norm2: (HostBuf, Option<HostBuf>),
    /// `mlp.fc1` `[D, hidden]`.
    pub fc1: (HostBuf, Option<HostBuf>),
    /// `mlp.fc2` `[hidden, D]`.
    pub fc2: (HostBuf, Option<HostBuf>),
    /// qkv, proj, fc1, fc2 weights packed for the bf16 GEMM ([`HostBlock::pack_bf16`]).
    pub packed: Option<Box<[crate::bf16_gemm::PackedB; 4]>>,
}

impl HostBlock {
    /// Packs the four linear weights for the bf16 GEMM once (no-op when packed already) and
    /// drops their fp32 copies: a packed block is for the bf16 precision only.
    pub fn pack_bf16(&mut self) {
        if self.packed.is_some() {
            return;
        }
        let (d, h) = (self.dim, self.hidden);
        let pack = crate::bf16_gemm::PackedB::pack;
        self.packed = Some(Box::new([
            pack(&self.qkv.0, d, 3 * d),
            pack(&self.proj.0, d, d),
            pack(&self.fc1.0, d, h),
            pack(&self.fc2.0, h, d),
        ]));
        for w in [
            &mut self.qkv.0,
            &mut self.proj.0,
            &mut self.fc1.0,
            &mut self.fc2.0,
        ] {
            *w = HostBuf::Owned(Vec::new());
        }
    }
}

/// The intermediate buffers of [`block_forward`], kept between blocks and forwards so that the
/// steady state allocates nothing (each grows to the largest shape it has seen).
#[derive(Debug, Default)]
pub struct Scratch {
    /// LayerNorm output `[N·T, D]`.
    h: Vec<f32>,
    /// `[N·T, 3D]`.
    qkv: Vec<f32>,
    /// Attention output `[N·T, D]`.
    a: Vec<f32>,
    /// MLP hidden `[N·T, hidden]`.
    u: Vec<f32>,
}

/// Reusable values shared by a process: [`Pool::with`] lends one (a new default one when all
/// are lent) and takes it back. A pool rather than a thread-local, because a rayon worker
/// waiting inside one kernel may steal and run another that needs its own.
pub struct Pool<T>(std::sync::Mutex<Vec<T>>);

impl<T: Default> Pool<T> {
    /// An empty pool.
    pub const fn new() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }

    /// Runs `f` with a value from the pool, returned to it afterwards.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let pool = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = pool().pop().unwrap_or_default();
        let r = f(&mut v);
        pool().push(v);
        r
    }
}

impl<T: Default> Default for Pool<T> {
    fn default() -> Self {
        Self::new()
    }
}

static SCRATCH_POOL: Pool<Scratch> = Pool::new();

/// Runs `f` with a [`Scratch`] from a process-wide [`Pool`] (one per concurrent caller).
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH_POOL.with(f)
}

/// One block on `x [N·T, D]` in place: `x += proj(attn(LN1 x))`, `x += fc2(GELU(fc1(LN2 x)))`,
/// biases and residuals folded into the GEMMs, intermediates in `s`.
///
/// With several rayon threads (and not already inside a [`split_batch`] share) the row-local
/// parts run as one share of the rows per thread, single-threaded inside: LN1 + qkv, then
/// (after attention, parallel over samples × heads) proj + residual + the whole MLP. Two joins
/// per block instead of one per GEMM; this is what a batch of 1 gets.
pub fn block_forward(x: &mut [f32], n: usize, t: usize, b: &HostBlock, s: &mut Scratch) {
    let (d, m) = (b.dim, n * t);
    let pk = |i: usize| b.packed.as_ref().map(|p| &p[i]);
    let threads = rayon::current_num_threads();
    if threads > 1 && m >= threads && !SERIAL.with(|s| s.get()) {
        let rows = m.div_ceil(threads);
        rows_into(&mut s.qkv, b.qkv.1.as_deref(), m, 3 * d);
        let parts: Vec<_> = x
            .chunks(rows * d)
            .zip(s.qkv.chunks_mut(rows * 3 * d))
            .collect();
        split_batch(parts, |(xr, qkv)| {
            let r = xr.len() / d;
            with_scratch(|ls| {
                layer_norm_into(&mut ls.h, xr, d, &b.norm1.0, b.norm1.1.as_deref(), b.eps);
                matmul_acc_in_precision(qkv, &ls.h, &b.qkv.0, pk(0), r, d, 3 * d);
            })
        });
        attention_into(&mut s.a, &s.qkv, n, t, d, b.heads);
        let parts: Vec<_> = x.chunks_mut(rows * d).zip(s.a.chunks(rows * d)).collect();
        split_batch(parts, |(xr, a)| {
            let r = xr.len() / d;
            linear_residual_packed(xr, a, &b.proj.0, pk(1), b.proj.1.as_deref(), r, d, d);
            with_scratch(|ls| mlp_residual(xr, r, b, ls));
        });
        return;
    }
    layer_norm_into(&mut s.h, x, d, &b.norm1.0, b.norm1.1.as_deref(), b.eps);
    let (qkv_w, qkv_b) = (&b.qkv.0, b.qkv.1.as_deref());
    linear_into(&mut s.qkv, &s.h, qkv_w, pk(0), qkv_b, m, d, 3 * d);
    attention_into(&mut s.a, &s.qkv, n, t, d, b.heads);
    linear_residual_packed(x, &s.a, &b.proj.0, pk(1), b.proj.1.as_deref(), m, d, d);
    mlp_residual(x, m, b, s);
}

/// `x [m, D] += fc2(GELU(fc1(LN2 x)))` in place.
fn mlp_residual(x: &mut [f32], m: usize, b: &HostBlock, s: &mut Scratch) {
    let d = b.dim;
    let pk = |i: usize| b.packed.as_ref().map(|p| &p[i]);
    layer_norm_into(&mut s.h, x, d, &b.norm2.0, b.norm2.1.as_deref(), b.eps);
    matmul_into(&mut s.u, &s.h, &b.fc1.0, pk(2), (m, d, b.hidden));
    gelu_bias_inplace(&mut s.u, b.fc1.1.as_deref());
    linear_residual_packed(x, &s.u, &b.fc2.0, pk(3), b.fc2.1.as_deref(), m, b.hidden, d);
}

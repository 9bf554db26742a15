//! A bf16 GEMM for CPU inference on AVX-512 BF16 (`vdpbf16ps`): `C += A · B` with `A` and `B`
//! rounded to bf16 (round to nearest even, as `vcvtneps2bf16`) and every product accumulated in
//! fp32. Products of two bf16 numbers are exact in fp32, so the only error against fp32 is the
//! rounding of the inputs (relative 2⁻⁹ per factor).
//!
//! Layouts: `B [k, n]` (the weight, burn's Linear layout) is packed once per call into
//! column panels of [`NR`] = 32 columns, `[n/32][k/2][32]` u32 where each u32 holds the bf16
//! pair `(B[2p, j], B[2p+1, j])`; `A [m, k]` into row panels of [`MR`] = 14 rows,
//! `[m/14][k/2][14]` u32 holding `(A[i, 2p], A[i, 2p+1])`. The micro-kernel keeps a 14 × 32
//! tile of C in 28 zmm accumulators; per k-pair it loads two B vectors and issues 28
//! `vdpbf16ps` with the A pair broadcast, i.e. 64 multiply-adds per instruction (twice an fp32
//! FMA). Edges are zero-padded in the packs and masked at the store.
//!
//! Used only where [`available`] (runtime detection); callers fall back to fp32 otherwise.

use rayon::prelude::*;

/// Rows of C per micro-tile.
pub const MR: usize = 14;
/// Columns of C per micro-tile (two zmm of 16 fp32).
pub const NR: usize = 32;

/// The bf16 GEMMs this crate has, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// AMX tiles (`tdpbf16ps`, [`crate::amx`]).
    Amx,
    /// AVX-512 BF16 (`vdpbf16ps`, this module's micro-kernel).
    Avx512Bf16,
}

impl Path {
    /// The name printed on stderr and by `fsvfm bench`.
    pub fn name(self) -> &'static str {
        match self {
            Path::Amx => "amx-bf16 (tdpbf16ps)",
            Path::Avx512Bf16 => "avx512-bf16 (vdpbf16ps)",
        }
    }
}

/// The best bf16 GEMM this process can run: AMX where the CPU and Linux allow it (and
/// `FSVFM_NO_AMX` is unset), else AVX-512 BF16, else none (bf16 then runs in fp32).
pub fn path() -> Option<Path> {
    if crate::amx::available() {
        Some(Path::Amx)
    } else if available_vdp() {
        Some(Path::Avx512Bf16)
    } else {
        None
    }
}

/// Whether this process runs a bf16 GEMM at all ([`path`] is some).
pub fn available() -> bool {
    path().is_some()
}

/// Whether this CPU runs the `vdpbf16ps` kernel (AVX-512F and AVX-512 BF16).
pub fn available_vdp() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// fp32 → bf16 bits, round to nearest even; NaN stays a (quiet) NaN. The scalar twin of
/// `vcvtneps2bf16` (which also flushes fp32 subnormal inputs to zero: done here too).
#[inline]
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    if x.is_subnormal() {
        return ((b >> 16) & 0x8000) as u16;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// The fp32 value of bf16 bits.
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A `[k, n]` matrix packed for [`matmul_acc_bf16`] in the layout of one [`Path`].
#[derive(Debug, Clone)]
pub struct PackedB(Packed);

#[derive(Debug, Clone)]
enum Packed {
    Vdp(VdpB),
    Amx(crate::amx::PackedB),
}

/// The `vdpbf16ps` layout (see the module's layouts).
#[derive(Debug, Clone)]
struct VdpB {
    k: usize,
    n: usize,
    /// k-pairs (`⌈k/2⌉`).
    kp: usize,
    data: Vec<u32>,
}

/// The u32 holding the bf16 pair `(lo, hi)` (lo in the low half), rounded to nearest even.
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) as u32 | (bf16_bits(hi) as u32) << 16
}

impl PackedB {
    /// Packs row-major `w [k, n]` for the best [`path`] (the `vdpbf16ps` layout when there is none).
    pub fn pack(w: &[f32], k: usize, n: usize) -> Self {
        Self::pack_for(path().unwrap_or(Path::Avx512Bf16), w, k, n)
    }

    /// Packs row-major `w [k, n]` for `path`.
    pub fn pack_for(path: Path, w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "PackedB::pack shape");
        match path {
            Path::Amx => Self(Packed::Amx(crate::amx::pack_b(w, k, n))),
            Path::Avx512Bf16 => Self(Packed::Vdp(VdpB::pack(w, k, n))),
        }
    }

    /// `(k, n)`.
    pub fn shape(&self) -> (usize, usize) {
        match &self.0 {
            Packed::Vdp(p) => (p.k, p.n),
            Packed::Amx(p) => p.shape(),
        }
    }

    /// The path this pack is for.
    pub fn path(&self) -> Path {
        match &self.0 {
            Packed::Vdp(_) => Path::Avx512Bf16,
            Packed::Amx(_) => Path::Amx,
        }
    }
}

impl VdpB {
    fn pack(w: &[f32], k: usize, n: usize) -> Self {
        let kp = k.div_ceil(2);
        let nb = n.div_ceil(NR);
        let mut data = vec![0u32; nb * kp * NR];
        data.par_chunks_mut(kp * NR)
            .enumerate()
            .for_each(|(jb, panel)| {
                let j0 = jb * NR;
                let cols = NR.min(n - j0);
                for p in 0..kp {
                    let r0 = &w[2 * p * n + j0..2 * p * n + j0 + cols];
                    let dst = &mut panel[p * NR..p * NR + cols];
                    if 2 * p + 1 < k {
                        let r1 = &w[(2 * p + 1) * n + j0..(2 * p + 1) * n + j0 + cols];
                        for ((d, &a), &b) in dst.iter_mut().zip(r0).zip(r1) {
                            *d = pair(a, b);
                        }
                    } else {
                        for (d, &a) in dst.iter_mut().zip(r0) {
                            *d = pair(a, 0.0);
                        }
                    }
                }
            });
        Self { k, n, kp, data }
    }
}

/// Packs `a [m, k]` into row panels of [`MR`] rows (zero rows past `m`), in `data` (its
/// allocation reused).
fn pack_a(data: &mut Vec<u32>, a: &[f32], m: usize, k: usize) {
    let kp = k.div_ceil(2);
    let mb = m.div_ceil(MR);
    data.clear();
    data.resize(mb * kp * MR, 0);
    let fast = convert_fast();
    data.par_chunks_mut(kp * MR)
        .enumerate()
        .for_each(|(ib, panel)| {
            let mut line = vec![0u32; kp];
            for i in 0..MR.min(m - ib * MR) {
                pairs_into(&mut line, &a[(ib * MR + i) * k..][..k], fast);
                for (p, &v) in line.iter().enumerate() {
                    panel[p * MR + i] = v;
                }
            }
        });
}

/// Whether the vectorised conversions ([`pairs32_to`], [`interleave16`]) may run: AVX-512F, BW
/// and BF16. Callers check once, outside their loops, and pass the answer as `fast`.
pub(crate) fn convert_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available_vdp() && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `row`'s values as consecutive bf16 pairs into `dst[..⌈len/2⌉]` (an odd tail paired with 0);
/// `fast` from [`convert_fast`].
pub(crate) fn pairs_into(dst: &mut [u32], row: &[f32], fast: bool) {
    let mut chunks = row.chunks_exact(32);
    for (x, d) in chunks.by_ref().zip(dst.chunks_exact_mut(16)) {
        pairs32_to(x, d.try_into().expect("16 pairs"), fast);
    }
    let done = row.len() - chunks.remainder().len();
    let mut pairs = chunks.remainder().chunks_exact(2);
    for (q, c) in pairs.by_ref().enumerate() {
        dst[done / 2 + q] = pair(c[0], c[1]);
    }
    if let [last] = pairs.remainder() {
        dst[row.len() / 2] = pair(*last, 0.0);
    }
}

/// The 16 pairs of `x[..32]` into `out`; `fast` from [`convert_fast`].
#[inline]
pub(crate) fn pairs32_to(x: &[f32], out: &mut [u32; 16], fast: bool) {
    let x = &x[..32];
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` says the CPU has the features (`convert_fast`); 32 values are readable.
        return unsafe { kernel::pairs32(x.as_ptr(), out) };
    }
    let _ = fast;
    for (o, c) in out.iter_mut().zip(x.chunks_exact(2)) {
        *o = pair(c[0], c[1]);
    }
}

/// `out[j] = pair(lo[j], hi[j])` for 16 columns; `fast` from [`convert_fast`].
pub(crate) fn interleave16(lo: &[f32; 16], hi: &[f32; 16], out: &mut [u32; 16], fast: bool) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` says the CPU has the features (`convert_fast`); 16 values each.
        return unsafe { kernel::interleave16(lo.as_ptr(), hi.as_ptr(), out) };
    }
    let _ = fast;
    for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
        *o = pair(l, h);
    }
}

/// Buffers for the A packs, kept between calls.
static A_PACKS: crate::cpu_kernels::Pool<Vec<u32>> = crate::cpu_kernels::Pool::new();

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// The 16 bf16 pairs of 32 consecutive fp32 values (round to nearest even).
    ///
    /// # Safety
    /// AVX-512F/BF16 present; `x` valid for 32 reads.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn pairs32(x: *const f32, out: &mut [u32; 16]) {
        // SAFETY: the caller guarantees the CPU features and 32 readable values (# Safety).
        unsafe {
            let lo = _mm512_loadu_ps(x);
            let hi = _mm512_loadu_ps(x.add(16));
            // Lanes 0..16 of the result come from the second operand.
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.as_mut_ptr().cast(), v);
        }
    }

    /// The 16 pairs `(lo[j], hi[j])` (round to nearest even), `lo` in the low halves.
    ///
    /// # Safety
    /// AVX-512F/BW/BF16 present; `lo` and `hi` valid for 16 reads.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn interleave16(lo: *const f32, hi: *const f32, out: &mut [u32; 16]) {
        // SAFETY: the caller guarantees the CPU features and 16 readable values each (# Safety).
        unsafe {
            // Lanes 0..16 of the conversion are `lo`, 16..32 `hi`; word 2j ← j, 2j+1 ← 16 + j.
            let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(
                _mm512_loadu_ps(hi),
                _mm512_loadu_ps(lo),
            ));
            const IDX: [u16; 32] = {
                let mut idx = [0u16; 32];
                let mut j = 0;
                while j < 32 {
                    idx[j] = (j / 2 + (j % 2) * 16) as u16;
                    j += 1;
                }
                idx
            };
            let idx = _mm512_loadu_si512(IDX.as_ptr().cast());
            _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_permutexvar_epi16(idx, v));
        }
    }

    /// `C[rows, cols] += A_panel · B_panel` for one tile; `c` points at `C[i0, j0]` with row
    /// stride `ldc`. `a`: `[kp][MR]`, `b`: `[kp][NR]`.
    ///
    /// # Safety
    /// AVX-512F/BF16 present; `a`, `b` hold `kp` k-pairs; `c` is valid for `rows × cols` at
    /// stride `ldc`, `rows ≤ MR`, `cols ≤ NR`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile(
        a: *const u32,
        b: *const u32,
        kp: usize,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        // SAFETY: the caller guarantees the CPU features and the extents of `a`, `b` and `c`
        // (# Safety); every access below stays within them.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            for p in 0..kp {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
                let ap = a.add(p * MR);
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(i) as i32));
                    acc_i[0] = _mm512_dpbf16_ps(acc_i[0], av, b0);
                    acc_i[1] = _mm512_dpbf16_ps(acc_i[1], av, b1);
                }
            }
            let m0: __mmask16 = if cols >= 16 {
                0xFFFF
            } else {
                ((1u32 << cols) - 1) as u16
            };
            let m1: __mmask16 = if cols >= 32 {
                0xFFFF
            } else if cols > 16 {
                ((1u32 << (cols - 16)) - 1) as u16
            } else {
                0
            };
            for (i, acc_i) in acc.iter().enumerate().take(rows) {
                let r = c.add(i * ldc);
                let old = _mm512_maskz_loadu_ps(m0, r);
                _mm512_mask_storeu_ps(r, m0, _mm512_add_ps(old, acc_i[0]));
                if m1 != 0 {
                    let old = _mm512_maskz_loadu_ps(m1, r.add(16));
                    _mm512_mask_storeu_ps(r.add(16), m1, _mm512_add_ps(old, acc_i[1]));
                }
            }
        }
    }
}

/// A raw pointer that may cross threads (each task writes a disjoint set of C's rows).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: tasks write disjoint row ranges of one buffer that outlives the parallel loop.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: shared only to hand each task its own disjoint rows.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not the field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst[m, n] += a[m, k] · B` with `a` and `B` rounded to bf16, fp32 accumulation, on the
/// path `b` was packed for.
///
/// # Panics
/// On shape mismatch, or when that path is not available.
pub fn matmul_acc_bf16(dst: &mut [f32], a: &[f32], b: &PackedB, m: usize) {
    match &b.0 {
        Packed::Amx(p) => crate::amx::matmul_acc(dst, a, p, m),
        Packed::Vdp(p) => {
            let (k, n) = (p.k, p.n);
            assert!(
                dst.len() == m * n && a.len() == m * k,
                "matmul_acc_bf16 shapes"
            );
            assert!(available_vdp(), "matmul_acc_bf16 needs AVX-512 BF16");
            if m == 0 || n == 0 {
                return;
            }
            A_PACKS.with(|pa| matmul_packed_a(dst, a, pa, p, m));
        }
    }
}

/// `out ← a[m, k] · B` (`[m, n]`, its allocation reused) in bf16 with fp32 accumulation; on AMX
/// without zero-filling `out` first.
///
/// # Panics
/// As [`matmul_acc_bf16`].
pub fn matmul_set_bf16(out: &mut Vec<f32>, a: &[f32], b: &PackedB, m: usize) {
    if let Packed::Amx(p) = &b.0 {
        return crate::amx::matmul_set(out, a, p, m);
    }
    let n = b.shape().1;
    out.clear();
    out.resize(m * n, 0.0);
    matmul_acc_bf16(out, a, b, m);
}

/// [`matmul_acc_bf16`] with `pa` as the buffer of A's pack.
fn matmul_packed_a(dst: &mut [f32], a: &[f32], pa: &mut Vec<u32>, b: &VdpB, m: usize) {
    let (k, n, kp) = (b.k, b.n, b.kp);
    pack_a(pa, a, m, k);
    let (mb, nb) = (m.div_ceil(MR), n.div_ceil(NR));
    let c = SendPtr(dst.as_mut_ptr());
    // Row panels split across threads; each walks every column panel with its A panel hot.
    (0..mb).into_par_iter().for_each(|ib| {
        let rows = MR.min(m - ib * MR);
        for jb in 0..nb {
            let cols = NR.min(n - jb * NR);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` was checked; the packs hold `kp` pairs per panel; the tile
            // `[ib·MR.., jb·NR..]` of `rows × cols` lies inside `dst` (row stride n), and row
            // panels are disjoint across tasks.
            unsafe {
                kernel::tile(
                    pa.as_ptr().add(ib * kp * MR),
                    b.data.as_ptr().add(jb * kp * NR),
                    kp,
                    c.get().add(ib * MR * n + jb * NR),
                    n,
                    rows,
                    cols,
                );
            }
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A uniform value in [-1, 1) from a 64-bit LCG.
    pub(crate) fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn rounding_is_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to the even 1.0.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: up to the even one.
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(bf16_to_f32(bf16_bits(-2.5)), -2.5);
        assert!(bf16_to_f32(bf16_bits(f32::NAN)).is_nan());
        assert_eq!(bf16_bits(f32::INFINITY), 0x7F80);
    }

    /// Runs `gemm(c, a, w, m, k, n)` (`c += a · w` through some pack of `w`) on random shapes with
    /// accumulation into a non-zero C, and checks it equals an f64 GEMM of the bf16-rounded
    /// inputs up to fp32 accumulation.
    pub(crate) fn check_rounded_product(
        shapes: &[(usize, usize, usize)],
        gemm: impl Fn(&mut [f32], &[f32], &[f32], (usize, usize, usize)),
    ) {
        let mut seed = 7u64;
        for &(m, k, n) in shapes {
            let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| lcg(&mut seed)).collect();
            let mut c = c0.clone();
            gemm(&mut c, &a, &w, (m, k, n));
            let r = |x: f32| bf16_to_f32(bf16_bits(x)) as f64;
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = c0[i * n + j] as f64
                        + (0..k)
                            .map(|l| r(a[i * k + l]) * r(w[l * n + j]))
                            .sum::<f64>();
                    let got = c[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + (k as f64).sqrt()),
                        "({m},{k},{n}) [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The `vdpbf16ps` kernel on shapes with every edge (m not a multiple of 14, odd k, n not a
    /// multiple of 32).
    #[test]
    fn equals_the_product_of_the_rounded_inputs() {
        if !available_vdp() {
            eprintln!("skipped: no AVX-512 BF16 on this CPU");
            return;
        }
        let shapes = [
            (1, 1, 1),
            (14, 2, 32),
            (29, 37, 45),
            (197, 384, 96),
            (30, 64, 1),
        ];
        check_rounded_product(&shapes, |c, a, w, (m, k, n)| {
            matmul_acc_bf16(c, a, &PackedB::pack_for(Path::Avx512Bf16, w, k, n), m)
        });
    }
}

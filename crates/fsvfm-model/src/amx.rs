//! bf16 GEMM on Intel AMX tiles (`tdpbf16ps`): `C += A · B` with `A` and `B` rounded to bf16 and
//! fp32 accumulation, the same contract as [`crate::bf16_gemm`]'s `vdpbf16ps` kernel, at the
//! tile rate (measured 2.5–3.4 TFLOP/s per core, `../shared/spec/amx-notes.md`).
//!
//! Reached from stable Rust with `asm!`: the process asks Linux once for the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, [`available`]); each GEMM task loads
//! the tile configuration (all eight tiles 16 rows × 64 bytes), runs, and releases the tiles.
//!
//! Layouts (every tile is 16 rows of 64 bytes):
//! - `B [k, n]` (the weight, burn's Linear layout), packed once ([`pack_b`]) into column panels
//!   of 16 and k-blocks of 32: `[⌈n/32⌉·2][⌈k/32⌉][16 pairs][16 columns]` u32, each u32 the
//!   bf16 pair `(B[2p, j], B[2p+1, j])` (the VNNI order `tdpbf16ps` reads); zero padded.
//! - `A [m, k]`, converted to bf16 per call (`pack_a_rows`) into whole tiles: row group `g` (16
//!   rows) and k-block `q` (32 values) is one 1 KiB tile `[⌈m/16⌉][⌈k/32⌉][16 rows][16 pairs]` u32
//!   (zero padded), so a tile load reads 16 consecutive cache lines.
//! - The micro-kernel computes a 32 × 32 block of C in four accumulator tiles (`tmm0..3`) from
//!   two A tiles (`tmm4`, `tmm5`) and two B tiles (`tmm6`, `tmm7`): C tile `2r + s` += A tile
//!   `4 + r` · B tile `6 + s`. Full blocks load and store C in place (the bias or residual already
//!   in `dst` is the initial value); blocks on the edges of C go through a 32 × 32 buffer.
//!
//! The micro-kernel is written once against [`Tiles`]; [`Hardware`] runs it on the tiles,
//! [`SoftTiles`] is a scalar model of the same instructions, so the packing and indexing are
//! tested on every CPU and the hardware is checked against the model where it exists.

use rayon::prelude::*;

/// Rows of a tile (and of A per tile).
pub const TILE_ROWS: usize = 16;
/// Columns of C per B tile (fp32).
pub const TILE_COLS: usize = 16;
/// k values per tile (bf16; 16 pairs).
pub const TILE_K: usize = 32;
/// Rows and columns of the C block of one micro-kernel call (2 × 2 tiles).
pub const BLOCK: usize = 32;

/// Whether this process can run AMX bf16 tiles: the CPU reports AMX-TILE and AMX-BF16, Linux
/// granted the tile state to the process, and `FSVFM_NO_AMX` is not set (it forces the
/// fallbacks, for tests and measurements). Decided once per process.
pub fn available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FSVFM_NO_AMX").is_none() && hw::request())
}

/// Whether bf16 attention runs its two products on the tiles: only where [`available`] holds
/// and `FSVFM_AMX_ATTENTION=1` asks for it (measured slower than the fp32 products at ViT head
/// widths, see `BENCHMARKS.md`; kept for longer sequences and fused-softmax work).
pub fn attention_on_tiles() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        available() && std::env::var_os("FSVFM_AMX_ATTENTION").is_some_and(|v| v == "1")
    })
}

/// A `[k, n]` matrix packed for [`matmul_acc`] (see the module's layouts).
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// k-blocks of [`TILE_K`].
    kb: usize,
    /// Column panels of [`TILE_COLS`] (even: the micro-kernel takes two).
    panels: usize,
    data: Vec<u32>,
}

/// u32 per B tile (16 pairs × 16 columns).
const TILE_U32: usize = TILE_ROWS * TILE_COLS;

impl PackedB {
    /// `(k, n)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// Packs row-major `w [k, n]` into the tile layout (bf16 rounded to nearest even).
pub fn pack_b(w: &[f32], k: usize, n: usize) -> PackedB {
    pack_b_strided(w.as_ptr(), w.len(), (k, n), (n, 1))
}

/// [`pack_b`] of the `[k, n]` matrix whose element `(i, j)` is `w[i·rs + j·cs]`.
///
/// # Panics
/// When an element lies outside `w` (`len` values).
fn pack_b_strided(
    w: *const f32,
    len: usize,
    (k, n): (usize, usize),
    (rs, cs): (usize, usize),
) -> PackedB {
    let mut b = PackedB {
        k: 0,
        n: 0,
        kb: 0,
        panels: 0,
        data: Vec::new(),
    };
    pack_b_into(&mut b, w, len, (k, n), (rs, cs), true);
    b
}

/// [`pack_b_strided`] into `b` (its allocation reused), on rayon's threads when `parallel`.
fn pack_b_into(
    b: &mut PackedB,
    w: *const f32,
    len: usize,
    (k, n): (usize, usize),
    (rs, cs): (usize, usize),
    parallel: bool,
) {
    if k > 0 && n > 0 {
        assert!((k - 1) * rs + (n - 1) * cs < len, "pack_b shape");
    }
    let kb = k.div_ceil(TILE_K);
    let panels = n.div_ceil(BLOCK) * 2;
    b.data.clear();
    b.data.resize(panels * kb * TILE_U32, 0);
    (b.k, b.n, b.kb, b.panels) = (k, n, kb, panels);
    let w = crate::bf16_gemm::SendPtr(w as *mut f32);
    let fast = crate::bf16_gemm::convert_fast();
    let fill = |(jp, panel): (usize, &mut [u32])| {
        let j0 = jp * TILE_COLS;
        let cols = TILE_COLS.min(n.saturating_sub(j0));
        // SAFETY: every (row, col) read is < (k, n), inside `w` (asserted above).
        let at = |i: usize, j: usize| unsafe { *w.get().add(i * rs + j * cs) };
        if rs == 1 && cols > 0 {
            // Columns contiguous (kᵀ in attention): each column's k values are its pairs.
            // Up to k = 256 on the stack (attention's head widths), else on the heap.
            let (mut stack, mut heap) = ([0u32; 128], Vec::new());
            let line: &mut [u32] = if kb * TILE_K / 2 <= stack.len() {
                &mut stack[..kb * TILE_K / 2]
            } else {
                heap.resize(kb * TILE_K / 2, 0);
                &mut heap
            };
            for jj in 0..cols {
                // SAFETY: column j0 + jj holds k values at stride 1, inside `w` (asserted).
                let col = unsafe { std::slice::from_raw_parts(w.get().add((j0 + jj) * cs), k) };
                crate::bf16_gemm::pairs_into(line, col, fast);
                for (pq, &v) in line.iter().enumerate() {
                    panel[pq * TILE_COLS + jj] = v;
                }
            }
            return;
        }
        for q in 0..kb {
            for p in 0..TILE_ROWS {
                let r0 = q * TILE_K + 2 * p;
                if r0 >= k {
                    break;
                }
                let row: &mut [u32; TILE_COLS] = (&mut panel[(q * TILE_ROWS + p) * TILE_COLS..]
                    [..TILE_COLS])
                    .try_into()
                    .expect("16 columns");
                if cs == 1 && cols == TILE_COLS && r0 + 1 < k {
                    // SAFETY: rows r0 and r0 + 1, columns j0..j0 + 16 lie inside `w` (asserted).
                    let (lo, hi) = unsafe {
                        let p0 = w.get().add(r0 * rs + j0);
                        (&*p0.cast::<[f32; 16]>(), &*p0.add(rs).cast::<[f32; 16]>())
                    };
                    crate::bf16_gemm::interleave16(lo, hi, row, fast);
                    continue;
                }
                for (jj, d) in row.iter_mut().enumerate().take(cols) {
                    let hi = if r0 + 1 < k { at(r0 + 1, j0 + jj) } else { 0.0 };
                    *d = crate::bf16_gemm::pair(at(r0, j0 + jj), hi);
                }
            }
        }
    };
    for_each_chunk(&mut b.data, kb * TILE_U32, parallel, fill);
}

/// `f((index, chunk))` for the `size`-long chunks of `buf`, on rayon's threads when `parallel`.
fn for_each_chunk(
    buf: &mut [u32],
    size: usize,
    parallel: bool,
    f: impl Fn((usize, &mut [u32])) + Sync + Send,
) {
    if size == 0 {
        return;
    }
    if parallel {
        buf.par_chunks_mut(size).enumerate().for_each(f);
    } else {
        buf.chunks_mut(size).enumerate().for_each(f);
    }
}

/// [`pack_a_rows`] of a contiguous `a [m, k]`.
#[cfg(test)]
fn pack_a(buf: &mut Vec<u32>, a: &[f32], m: usize, k: usize) {
    pack_a_rows(buf, a, (m, k), k, true)
}

/// Converts the `[m, k]` matrix whose row `i` is `a[i·lda..i·lda + k]` to bf16 tiles in `buf`
/// (its allocation reused; u32 = two bf16), on rayon's threads when `parallel`: row group `g`
/// (16 rows, zero padded past `m`) and k-block `q` (32 values, zero padded past `k`) is the
/// 1 KiB tile at u32 offset `(g·⌈k/32⌉ + q)·256`, row-major at 64 bytes per row, so a tile load
/// reads 16 consecutive cache lines.
fn pack_a_rows(buf: &mut Vec<u32>, a: &[f32], (m, k): (usize, usize), lda: usize, parallel: bool) {
    if m > 0 {
        assert!((m - 1) * lda + k <= a.len(), "pack_a shape");
    }
    let kb = k.div_ceil(TILE_K);
    buf.clear();
    buf.resize(m.div_ceil(TILE_ROWS) * kb * TILE_U32, 0);
    let fast = crate::bf16_gemm::convert_fast();
    let fill = |(g, group): (usize, &mut [u32])| {
        for r in 0..TILE_ROWS.min(m - g * TILE_ROWS) {
            let row = &a[(g * TILE_ROWS + r) * lda..][..k];
            for (q, vals) in row.chunks(TILE_K).enumerate() {
                let dst: &mut [u32; TILE_COLS] = (&mut group[q * TILE_U32 + r * TILE_COLS..]
                    [..TILE_COLS])
                    .try_into()
                    .expect("16 pairs");
                if vals.len() == TILE_K {
                    crate::bf16_gemm::pairs32_to(vals, dst, fast);
                } else {
                    // The zero-padded tail (`dst` is still zero from the resize).
                    crate::bf16_gemm::pairs_into(dst, vals, fast);
                }
            }
        }
    };
    for_each_chunk(buf, kb * TILE_U32, parallel, fill);
}

/// The tile operations the micro-kernel uses. Tile numbers: C `0..4`, A `4, 5`, B `6, 7`.
pub trait Tiles {
    /// Configures all eight tiles as 16 rows × 64 bytes.
    ///
    /// # Safety
    /// On [`Hardware`]: [`available`] holds.
    unsafe fn configure(&mut self);
    /// Zeroes tile `t`.
    ///
    /// # Safety
    /// As [`Tiles::configure`], after it.
    unsafe fn zero(&mut self, t: usize);
    /// Loads tile `t`: 16 rows of 64 bytes from `p`, row `r` at `p + r·stride`.
    ///
    /// # Safety
    /// As [`Tiles::zero`]; the 16 rows are readable.
    unsafe fn load(&mut self, t: usize, p: *const u8, stride: usize);
    /// Stores tile `t` like [`Tiles::load`] reads it.
    ///
    /// # Safety
    /// As [`Tiles::zero`]; the 16 rows are writable.
    unsafe fn store(&mut self, t: usize, p: *mut u8, stride: usize);
    /// `tdpbf16ps`: C tile `c` (16 × 16 fp32) += A tile `4 + c/2` (16 × 32 bf16) · B tile
    /// `6 + c%2` (16 pairs × 16 columns).
    ///
    /// # Safety
    /// As [`Tiles::zero`].
    unsafe fn dot(&mut self, c: usize);
    /// Releases the tile state.
    ///
    /// # Safety
    /// As [`Tiles::zero`].
    unsafe fn release(&mut self);
}

/// A scalar model of the tile instructions (8 tiles of 16 × 64 bytes), `tdpbf16ps` as Intel's
/// pseudo-code: per output element, for each pair, the two products added in fp32 in order.
pub struct SoftTiles([[u32; 16]; 16 * 8]);

impl Default for SoftTiles {
    fn default() -> Self {
        Self([[0; 16]; 16 * 8])
    }
}

impl SoftTiles {
    fn tile(&mut self, t: usize) -> &mut [[u32; 16]] {
        &mut self.0[t * 16..(t + 1) * 16]
    }
}

impl Tiles for SoftTiles {
    unsafe fn configure(&mut self) {}
    unsafe fn zero(&mut self, t: usize) {
        self.tile(t).iter_mut().for_each(|r| *r = [0; 16]);
    }
    unsafe fn load(&mut self, t: usize, p: *const u8, stride: usize) {
        for (r, row) in self.tile(t).iter_mut().enumerate() {
            // SAFETY: the caller guarantees 16 readable rows of 64 bytes (# Safety).
            *row = unsafe { p.add(r * stride).cast::<[u32; 16]>().read_unaligned() };
        }
    }
    unsafe fn store(&mut self, t: usize, p: *mut u8, stride: usize) {
        for (r, row) in self.tile(t).iter().enumerate() {
            // SAFETY: the caller guarantees 16 writable rows of 64 bytes (# Safety).
            unsafe { p.add(r * stride).cast::<[u32; 16]>().write_unaligned(*row) };
        }
    }
    unsafe fn dot(&mut self, c: usize) {
        let lo = |x: u32| f32::from_bits(x << 16);
        let hi = |x: u32| f32::from_bits(x & 0xFFFF_0000);
        let a = self.0[(4 + c / 2) * 16..][..16].to_vec();
        let b = self.0[(6 + c % 2) * 16..][..16].to_vec();
        for (m, row) in self.tile(c).iter_mut().enumerate() {
            for (n, cell) in row.iter_mut().enumerate() {
                let mut acc = f32::from_bits(*cell);
                for (&x, brow) in a[m].iter().zip(&b) {
                    acc += lo(x) * lo(brow[n]);
                    acc += hi(x) * hi(brow[n]);
                }
                *cell = acc.to_bits();
            }
        }
    }
    unsafe fn release(&mut self) {}
}

/// The AMX tiles themselves (`asm!`).
pub struct Hardware;

#[cfg(target_arch = "x86_64")]
mod hw {
    use std::arch::asm;

    /// `arch_prctl(code, arg)` (syscall 158).
    ///
    /// # Safety
    /// `arg` is what `code` expects (a number, or a pointer to writable memory).
    unsafe fn arch_prctl(code: i64, arg: i64) -> i64 {
        let r: i64;
        // SAFETY: a plain system call; the kernel clobbers rcx and r11 only.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => r, in("rdi") code, in("rsi") arg,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        r
    }

    /// CPUID leaf 7 reports AMX-TILE (EDX 24) and AMX-BF16 (EDX 22), and Linux grants the
    /// process the tile data state (`ARCH_REQ_XCOMP_PERM` 0x1023, `XFEATURE_XTILEDATA` 18; read
    /// back with `ARCH_GET_XCOMP_PERM` 0x1022). The request fails on kernels without AMX support.
    pub fn request() -> bool {
        // Leaf 7 is read only when leaf 0 says it exists.
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return false;
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        if edx & (1 << 24) == 0 || edx & (1 << 22) == 0 {
            return false;
        }
        let mut perm: u64 = 0;
        // SAFETY: 0x1023 takes a number; 0x1022 writes one u64 to the pointer given.
        unsafe {
            arch_prctl(0x1023, 18) == 0
                && arch_prctl(0x1022, (&raw mut perm) as i64) == 0
                && perm & (1 << 18) != 0
        }
    }

    /// The 64-byte tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    static CONFIG: Config = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
            t += 1;
        }
        Config(c)
    };

    impl super::Tiles for super::Hardware {
        #[inline(always)]
        unsafe fn configure(&mut self) {
            // SAFETY: the caller guarantees AMX and the granted tile state (# Safety).
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly))
            };
        }
        #[inline(always)]
        unsafe fn zero(&mut self, t: usize) {
            // SAFETY: configured tiles (# Safety).
            unsafe {
                match t {
                    0 => asm!("tilezero tmm0", options(nostack, nomem)),
                    1 => asm!("tilezero tmm1", options(nostack, nomem)),
                    2 => asm!("tilezero tmm2", options(nostack, nomem)),
                    3 => asm!("tilezero tmm3", options(nostack, nomem)),
                    _ => unreachable!("accumulator tiles are 0..4"),
                }
            }
        }
        #[inline(always)]
        unsafe fn load(&mut self, t: usize, p: *const u8, s: usize) {
            // SAFETY: configured tiles; 16 readable rows at stride `s` (# Safety).
            unsafe {
                match t {
                    0 => {
                        asm!("tileloadd tmm0, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    1 => {
                        asm!("tileloadd tmm1, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    2 => {
                        asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    3 => {
                        asm!("tileloadd tmm3, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    4 => {
                        asm!("tileloadd tmm4, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    5 => {
                        asm!("tileloadd tmm5, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    6 => {
                        asm!("tileloadd tmm6, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    7 => {
                        asm!("tileloadd tmm7, [{p} + {s}*1]", p = in(reg) p, s = in(reg) s, options(nostack, readonly))
                    }
                    _ => unreachable!("tiles are 0..8"),
                }
            }
        }
        #[inline(always)]
        unsafe fn store(&mut self, t: usize, p: *mut u8, s: usize) {
            // SAFETY: configured tiles; 16 writable rows at stride `s` (# Safety).
            unsafe {
                match t {
                    0 => {
                        asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) p, s = in(reg) s, options(nostack))
                    }
                    1 => {
                        asm!("tilestored [{p} + {s}*1], tmm1", p = in(reg) p, s = in(reg) s, options(nostack))
                    }
                    2 => {
                        asm!("tilestored [{p} + {s}*1], tmm2", p = in(reg) p, s = in(reg) s, options(nostack))
                    }
                    3 => {
                        asm!("tilestored [{p} + {s}*1], tmm3", p = in(reg) p, s = in(reg) s, options(nostack))
                    }
                    _ => unreachable!("accumulator tiles are 0..4"),
                }
            }
        }
        #[inline(always)]
        unsafe fn dot(&mut self, c: usize) {
            // SAFETY: configured tiles (# Safety).
            unsafe {
                match c {
                    0 => asm!("tdpbf16ps tmm0, tmm4, tmm6", options(nostack, nomem)),
                    1 => asm!("tdpbf16ps tmm1, tmm4, tmm7", options(nostack, nomem)),
                    2 => asm!("tdpbf16ps tmm2, tmm5, tmm6", options(nostack, nomem)),
                    3 => asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem)),
                    _ => unreachable!("accumulator tiles are 0..4"),
                }
            }
        }
        #[inline(always)]
        unsafe fn release(&mut self) {
            // SAFETY: releasing is always allowed once the state was granted (# Safety).
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod hw {
    pub fn request() -> bool {
        false
    }
    impl super::Tiles for super::Hardware {
        unsafe fn configure(&mut self) {
            unreachable!("no AMX off x86_64")
        }
        unsafe fn zero(&mut self, _: usize) {}
        unsafe fn load(&mut self, _: usize, _: *const u8, _: usize) {}
        unsafe fn store(&mut self, _: usize, _: *mut u8, _: usize) {}
        unsafe fn dot(&mut self, _: usize) {}
        unsafe fn release(&mut self) {}
    }
}

/// One 32 × 32 block of C (`rows_t` ∈ {1, 2} A tiles): `c` (row stride `ldc` bytes) += the
/// `rows_t` A row groups at `a` (see [`pack_a_rows`]) times the two B panels at `b` (`kb` tiles
/// each, consecutive); with `overwrite`, `c` = the product (C is not read).
///
/// # Safety
/// The tiles are configured; `a` holds `rows_t` row groups of `kb` tiles, `b` two panels of
/// `kb` tiles, `c` `16·rows_t` rows of 128 bytes at stride `ldc`.
#[inline(always)]
unsafe fn block<T: Tiles>(
    t: &mut T,
    rows_t: usize,
    a: *const u32,
    b: *const u32,
    kb: usize,
    (c, ldc): (*mut u8, usize),
    overwrite: bool,
) {
    // SAFETY: all addresses stay inside the extents the caller guarantees (# Safety).
    unsafe {
        for r in 0..rows_t {
            for s in 0..2 {
                if overwrite {
                    t.zero(2 * r + s);
                } else {
                    t.load(2 * r + s, c.add(r * TILE_ROWS * ldc + s * 64), ldc);
                }
            }
        }
        for q in 0..kb {
            for r in 0..rows_t {
                t.load(4 + r, a.add((r * kb + q) * TILE_U32).cast(), 64);
            }
            t.load(6, b.add(q * TILE_U32).cast(), 64);
            t.load(7, b.add((kb + q) * TILE_U32).cast(), 64);
            for r in 0..rows_t {
                t.dot(2 * r);
                t.dot(2 * r + 1);
            }
        }
        for r in 0..rows_t {
            for s in 0..2 {
                t.store(2 * r + s, c.add(r * TILE_ROWS * ldc + s * 64), ldc);
            }
        }
    }
}

/// `dst[rows i0.., all n]` += A · B (with `overwrite`: = A · B, `dst` not read) for the row
/// blocks `blocks` (of [`BLOCK`] rows) on `tiles`.
///
/// # Safety
/// `tiles` may run (see [`Tiles`]); `pa` is [`pack_a_rows`]'s output for `m` rows;
/// `dst` holds `m` rows of `n` fp32 at row stride `ldc` and no one else touches these rows
/// meanwhile.
unsafe fn run_rows<T: Tiles>(
    tiles: &mut T,
    (dst, ldc): (crate::bf16_gemm::SendPtr, usize),
    pa: &[u32],
    b: &PackedB,
    m: usize,
    blocks: std::ops::Range<usize>,
    overwrite: bool,
) {
    let n = b.n;
    let mut edge = [0f32; BLOCK * BLOCK];
    // SAFETY: see the per-call comments; the caller guarantees the extents (# Safety).
    unsafe {
        tiles.configure();
        let mut one = |ib: usize, jb: usize| {
            let j0 = jb * BLOCK;
            let cols = BLOCK.min(n - j0);
            let bp = b.data.as_ptr().add(2 * jb * b.kb * TILE_U32);
            let i0 = ib * BLOCK;
            let rows = BLOCK.min(m - i0);
            let rows_t = rows.div_ceil(TILE_ROWS);
            let a = pa.as_ptr().add(i0 / TILE_ROWS * b.kb * TILE_U32);
            let c = dst.get().add(i0 * ldc + j0);
            if rows == BLOCK && cols == BLOCK {
                block(tiles, 2, a, bp, b.kb, (c.cast(), ldc * 4), overwrite);
                return;
            }
            // An edge: through `edge` (what lies outside the valid part is never copied back).
            for i in (0..rows).filter(|_| !overwrite) {
                std::ptr::copy_nonoverlapping(
                    c.add(i * ldc),
                    edge.as_mut_ptr().add(i * BLOCK),
                    cols,
                );
            }
            let e = edge.as_mut_ptr().cast();
            block(tiles, rows_t, a, bp, b.kb, (e, BLOCK * 4), overwrite);
            for i in 0..rows {
                std::ptr::copy_nonoverlapping(edge.as_ptr().add(i * BLOCK), c.add(i * ldc), cols);
            }
        };
        // Column panels outer: a pair of B panels (`2·kb` KiB) stays in L1 while the A row
        // groups stream past it in memory order.
        for jb in 0..b.panels / 2 {
            for ib in blocks.clone() {
                one(ib, jb);
            }
        }
        tiles.release();
    }
}

/// Buffers for the A packs, kept between calls.
static A_PACKS: crate::cpu_kernels::Pool<Vec<u32>> = crate::cpu_kernels::Pool::new();

/// `dst[m, n] += a[m, k] · B` on the AMX tiles (bf16 inputs, fp32 accumulation), row blocks
/// split across rayon's threads.
///
/// # Panics
/// On shape mismatch, or when [`available`] is false.
pub fn matmul_acc(dst: &mut [f32], a: &[f32], b: &PackedB, m: usize) {
    assert!(available(), "amx::matmul_acc needs AMX");
    // SAFETY: `available()` holds, so the hardware tiles may run; `dst` is initialised.
    unsafe { gemm_on((dst.as_mut_ptr(), dst.len()), a, b, m, false, || Hardware) }
}

/// `out ← a[m, k] · B` (`[m, n]`, its allocation reused; not zero-filled first: the tiles start
/// from zero and every element is written).
///
/// # Panics
/// On shape mismatch, or when [`available`] is false.
pub fn matmul_set(out: &mut Vec<f32>, a: &[f32], b: &PackedB, m: usize) {
    assert!(available(), "amx::matmul_set needs AMX");
    // SAFETY: `available()` holds; the overwrite mode writes all m·n elements of the reserved
    // capacity before the length is set.
    unsafe { set_on(out, a, b, m, || Hardware) }
}

/// [`matmul_acc`] on the scalar tile model: the same packing, blocking and edges, on any CPU.
pub fn matmul_acc_model(dst: &mut [f32], a: &[f32], b: &PackedB, m: usize) {
    // SAFETY: the model runs everywhere; `dst` is initialised.
    unsafe {
        gemm_on(
            (dst.as_mut_ptr(), dst.len()),
            a,
            b,
            m,
            false,
            SoftTiles::default,
        )
    }
}

/// [`matmul_set`] on the scalar tile model.
pub fn matmul_set_model(out: &mut Vec<f32>, a: &[f32], b: &PackedB, m: usize) {
    // SAFETY: the model runs everywhere; as in `matmul_set`.
    unsafe { set_on(out, a, b, m, SoftTiles::default) }
}

/// `out ← a · B` on the tiles `tiles()` makes.
///
/// # Safety
/// Those tiles may run.
unsafe fn set_on<T: Tiles>(
    out: &mut Vec<f32>,
    a: &[f32],
    b: &PackedB,
    m: usize,
    tiles: impl Fn() -> T + Sync,
) {
    let len = m * b.n;
    out.clear();
    out.reserve(len);
    // SAFETY: the caller guarantees the tiles; the overwrite mode writes every one of the `len`
    // reserved elements (full blocks store whole tiles, edges copy their valid part), so the
    // length may be set afterwards.
    unsafe {
        gemm_on((out.as_mut_ptr(), len), a, b, m, true, tiles);
        out.set_len(len);
    }
}

/// The GEMM on the tiles `tiles()` makes (one per task): `dst += a · B`, or with `overwrite`
/// `dst = a · B` (`dst` not read; it may be uninitialised).
///
/// # Safety
/// Those tiles may run; `dst` is valid for `len` writes (and reads unless `overwrite`).
unsafe fn gemm_on<T: Tiles>(
    (dst, len): (*mut f32, usize),
    a: &[f32],
    b: &PackedB,
    m: usize,
    overwrite: bool,
    tiles: impl Fn() -> T + Sync,
) {
    let (k, n) = (b.k, b.n);
    assert!(len == m * n && a.len() == m * k, "amx::matmul shapes");
    if m == 0 || n == 0 {
        return;
    }
    let threads = crate::cpu_kernels::gemm_threads();
    A_PACKS.with(|pa| {
        pack_a_rows(pa, a, (m, k), k, threads > 1);
        let c = crate::bf16_gemm::SendPtr(dst);
        let blocks = m.div_ceil(BLOCK);
        let pa = &pa[..];
        let tasks = blocks.min(threads * 4);
        let task = |task: usize| {
            let range = task * blocks / tasks..(task + 1) * blocks / tasks;
            // SAFETY: the caller guarantees the tiles; tasks own disjoint row blocks of `dst`.
            unsafe { run_rows(&mut tiles(), (c, n), pa, b, m, range, overwrite) };
        };
        if threads == 1 {
            (0..tasks).for_each(task);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
    });
}

/// Per-thread buffers of [`attention_head`]: A pack, B pack.
struct HeadBufs {
    a: Vec<u32>,
    b: PackedB,
}

thread_local! {
    static HEAD_BUFS: std::cell::RefCell<HeadBufs> = const {
        std::cell::RefCell::new(HeadBufs {
            a: Vec::new(),
            b: PackedB { k: 0, n: 0, kb: 0, panels: 0, data: Vec::new() },
        })
    };
}

/// One attention head on the tiles, single-threaded (the caller runs heads in parallel):
/// `scores [t, t] = q kᵀ` (overwritten), `softmax(scale · scores)` by `softmax` (which leaves
/// the unnormalised exponentials and writes `1 / Σ` per row into `inv`), then
/// `out [t, hd] (row stride ld_out) = (e v) · inv` (`out` not read: it may be uninitialised). `q`, `k`, `v` point at row 0 of their
/// `[t, hd]` blocks at row stride `ld_qkv`.
///
/// # Safety
/// [`available`] holds; `q`, `k`, `v` are readable for `t` rows of `hd` at stride `ld_qkv`,
/// `out` writable for `t` rows of `hd` at stride `ld_out`; `scores` holds `t·t`, `inv` `t`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attention_head(
    (q, k, v): (*const f32, *const f32, *const f32),
    ld_qkv: usize,
    (t, hd): (usize, usize),
    scores: &mut [f32],
    inv: &mut [f32],
    softmax: impl FnOnce(&mut [f32], &mut [f32]),
    (out, ld_out): (*mut f32, usize),
) {
    let span = (t - 1) * ld_qkv + hd;
    HEAD_BUFS.with(|cell| {
        let bufs = &mut *cell.borrow_mut();
        // SAFETY: the caller guarantees the extents (# Safety); `span` values from each of q, k
        // and v are readable; the tiles may run.
        unsafe {
            // scores = q[t, hd] · kᵀ: B(i, j) = k[j, i].
            pack_a_rows(
                &mut bufs.a,
                std::slice::from_raw_parts(q, span),
                (t, hd),
                ld_qkv,
                false,
            );
            pack_b_into(&mut bufs.b, k, span, (hd, t), (1, ld_qkv), false);
            let blocks = t.div_ceil(BLOCK);
            let sp = crate::bf16_gemm::SendPtr(scores.as_mut_ptr());
            run_rows(&mut Hardware, (sp, t), &bufs.a, &bufs.b, t, 0..blocks, true);
            softmax(scores, inv);
            // out = e[t, t] · v[t, hd], then each row times its 1 / Σ.
            pack_a_rows(&mut bufs.a, scores, (t, t), t, false);
            pack_b_into(&mut bufs.b, v, span, (t, hd), (ld_qkv, 1), false);
            let op = crate::bf16_gemm::SendPtr(out);
            run_rows(
                &mut Hardware,
                (op, ld_out),
                &bufs.a,
                &bufs.b,
                t,
                0..blocks,
                true,
            );
            for (i, &s) in inv.iter().enumerate() {
                for c in std::slice::from_raw_parts_mut(out.add(i * ld_out), hd) {
                    *c *= s;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16_gemm::tests::{check_rounded_product, lcg};

    /// Shapes with every edge: M = 1, rows not a multiple of 16 or 32, K below, at and not a
    /// multiple of 32, N not a multiple of 16.
    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (1, 64, 32),
        (16, 32, 16),
        (33, 37, 45),
        (197, 384, 96),
        (40, 100, 7),
        (64, 96, 70),
    ];

    fn check(gemm: fn(&mut [f32], &[f32], &PackedB, usize)) {
        check_rounded_product(SHAPES, |c, a, w, (m, k, n)| gemm(c, a, &pack_b(w, k, n), m));
    }

    /// `c += a · w` through the overwrite mode: a set into a buffer full of NaN (so a read of
    /// `dst`, or an element left unwritten, shows), then added to `c`.
    fn check_set(set: fn(&mut Vec<f32>, &[f32], &PackedB, usize)) {
        check_rounded_product(SHAPES, |c, a, w, (m, k, n)| {
            let mut out = vec![f32::NAN; m * n + 64];
            out.truncate(3);
            set(&mut out, a, &pack_b(w, k, n), m);
            assert_eq!(out.len(), m * n);
            for (ci, o) in c.iter_mut().zip(&out) {
                *ci += o;
            }
        });
    }

    #[test]
    fn tile_model_overwrite_writes_every_element_without_reading() {
        check_set(matmul_set_model);
    }

    #[test]
    fn amx_overwrite_writes_every_element_without_reading() {
        if !available() {
            eprintln!("skipped: no AMX on this CPU (or FSVFM_NO_AMX)");
            return;
        }
        check_set(matmul_set);
    }

    /// The tile model with the packing and blocking equals the product of the bf16-rounded
    /// inputs (every CPU).
    #[test]
    fn tile_model_equals_the_product_of_the_rounded_inputs() {
        check(matmul_acc_model);
    }

    /// The hardware tiles do the same (where the CPU has AMX).
    #[test]
    fn amx_equals_the_product_of_the_rounded_inputs() {
        if !available() {
            eprintln!("skipped: no AMX on this CPU (or FSVFM_NO_AMX)");
            return;
        }
        check(matmul_acc);
    }

    /// The strided packs (kᵀ with unit row stride, A rows with a longer stride, the vectorised
    /// pair interleave) lay out exactly what the plain packs of the same matrices do.
    #[test]
    fn strided_packs_equal_the_plain_packs() {
        let mut seed = 5u64;
        for &(k, n) in &[(32, 197), (37, 45), (64, 16), (1, 3)] {
            let w: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
            let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let plain = pack_b(&w, k, n);
            let from_t = pack_b_strided(wt.as_ptr(), wt.len(), (k, n), (1, k));
            assert_eq!(plain.data, from_t.data, "kᵀ pack ({k}, {n})");
            let mut scalar = plain.clone();
            scalar.data.fill(0);
            // The scalar route: column stride 2 over a widened copy (no 16-wide fast path).
            let wide: Vec<f32> = w.iter().flat_map(|&x| [x, 0.0]).collect();
            pack_b_into(
                &mut scalar,
                wide.as_ptr(),
                wide.len(),
                (k, n),
                (2 * n, 2),
                false,
            );
            assert_eq!(plain.data, scalar.data, "interleave ({k}, {n})");
            let lda = k + 3;
            let a: Vec<f32> = (0..n * lda).map(|_| lcg(&mut seed)).collect();
            let compact: Vec<f32> = (0..n * k).map(|i| a[(i / k) * lda + i % k]).collect();
            let (mut pa, mut pc) = (Vec::new(), Vec::new());
            pack_a_rows(&mut pa, &a, (n, k), lda, false);
            pack_a(&mut pc, &compact, n, k);
            assert_eq!(pa, pc, "strided A ({n}, {k})");
        }
    }

    /// One attention head on the tiles against the fp32 kernel (where the CPU has AMX): within
    /// bf16 rounding of q, k, v and the probabilities.
    #[test]
    fn amx_attention_head_matches_fp32_attention() {
        if !available() {
            eprintln!("skipped: no AMX on this CPU (or FSVFM_NO_AMX)");
            return;
        }
        let (n, t, d, heads) = (2usize, 197usize, 96usize, 3usize);
        let hd = d / heads;
        let mut seed = 3u64;
        let qkv: Vec<f32> = (0..n * t * 3 * d).map(|_| 2.0 * lcg(&mut seed)).collect();
        let want = crate::cpu_kernels::attention_from_qkv(&qkv, n, t, d, heads);
        let mut got = vec![f32::NAN; n * t * d];
        let scale = (hd as f32).powf(-0.5);
        let (mut scores, mut inv) = (vec![0f32; t * t], vec![0f32; t]);
        for b in 0..n {
            for h in 0..heads {
                let base = qkv[b * t * 3 * d..].as_ptr();
                // SAFETY: AMX is available; q, k, v and the output head lie inside their buffers.
                unsafe {
                    let (q, k, v) = (
                        base.add(h * hd),
                        base.add(d + h * hd),
                        base.add(2 * d + h * hd),
                    );
                    let out = got.as_mut_ptr().add(b * t * d + h * hd);
                    let softmax = |s: &mut [f32], inv: &mut [f32]| {
                        for (row, iv) in s.chunks_exact_mut(t).zip(inv.iter_mut()) {
                            let mx = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
                            let mut sum = 0.0;
                            for x in row.iter_mut() {
                                *x = ((*x - mx) * scale).exp();
                                sum += *x;
                            }
                            *iv = 1.0 / sum;
                        }
                    };
                    attention_head(
                        (q, k, v),
                        3 * d,
                        (t, hd),
                        &mut scores,
                        &mut inv,
                        softmax,
                        (out, d),
                    );
                }
            }
        }
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-2, "max |Δ| {worst}");
        assert!(worst > 0.0, "bf16 rounding must show");
    }
}

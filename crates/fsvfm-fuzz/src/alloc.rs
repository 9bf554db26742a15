//! A counting global allocator: the bytes live now, the peak of a case, and the allocations a
//! case asked for beyond its budget.
//!
//! A binary or test that fuzzes installs it with
//! `#[global_allocator] static A: fsvfm_fuzz::alloc::Counting = fsvfm_fuzz::alloc::Counting;`.
//! Counts are process-wide (a parser may allocate on rayon's threads), so cases run one at a
//! time ([`crate::check`] holds a lock).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The allocator. Zero-sized; all state is in statics.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Allocations so far (only ever grows: tells whether this allocator is the global one even
/// while other threads free memory).
static CALLS: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Live bytes above which an allocation is counted as over budget.
static SOFT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Live bytes above which an allocation is refused (null: `try_reserve` fails, anything else
/// aborts with "memory allocation of N bytes failed", which `tools/fuzz.sh` turns into a corpus
/// case). Real memory is never spent on a header's lie.
static HARD: AtomicUsize = AtomicUsize::new(usize::MAX);
static OVER: AtomicUsize = AtomicUsize::new(0);
static LARGEST_OVER: AtomicUsize = AtomicUsize::new(0);
/// What runs now, printed when an allocation is refused (read with `try_lock` only: the
/// allocator must not block or allocate).
static LABEL: Mutex<String> = Mutex::new(String::new());

/// The allocator's counters for one case, see [`begin`] and [`end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Highest live bytes above the case's start.
    pub peak: usize,
    /// Allocations that took live bytes over the soft budget.
    pub over_budget: usize,
    /// The largest of those, bytes.
    pub largest_over: usize,
}

/// Whether [`Counting`] is the global allocator of this process.
pub fn installed() -> bool {
    let before = CALLS.load(Relaxed);
    drop(std::hint::black_box(vec![0u8; 1 << 16]));
    CALLS.load(Relaxed) > before
}

/// Starts a case: live bytes now are its base, `budget` bytes above it are allowed, `hard`
/// above it refused. Returns the base.
pub fn begin(label: &str, budget: usize, hard: usize) -> usize {
    if let Ok(mut l) = LABEL.lock() {
        l.clear();
        l.push_str(label);
    }
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    OVER.store(0, Relaxed);
    LARGEST_OVER.store(0, Relaxed);
    SOFT.store(base.saturating_add(budget), Relaxed);
    HARD.store(base.saturating_add(hard.max(budget)), Relaxed);
    base
}

/// Ends the case begun at `base`: its usage; budgets are lifted.
pub fn end(base: usize) -> Usage {
    SOFT.store(usize::MAX, Relaxed);
    HARD.store(usize::MAX, Relaxed);
    Usage {
        peak: PEAK.load(Relaxed).saturating_sub(base),
        over_budget: OVER.load(Relaxed),
        largest_over: LARGEST_OVER.load(Relaxed),
    }
}

/// Counts `size` new bytes; false when they must be refused.
fn take(size: usize) -> bool {
    CALLS.fetch_add(1, Relaxed);
    let now = LIVE.fetch_add(size, Relaxed).saturating_add(size);
    if now > SOFT.load(Relaxed) {
        OVER.fetch_add(1, Relaxed);
        LARGEST_OVER.fetch_max(size, Relaxed);
        if now > HARD.load(Relaxed) {
            LIVE.fetch_sub(size, Relaxed);
            refused(size);
            return false;
        }
    }
    PEAK.fetch_max(now, Relaxed);
    true
}

fn refused(size: usize) {
    // No allocation here: fixed text, the size's digits on the stack, the label if free.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = size;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"fsvfm-fuzz: refused an allocation of ");
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes over the case's memory budget");
    if let Ok(l) = LABEL.try_lock() {
        let _ = err.write_all(b" in ");
        let _ = err.write_all(l.as_bytes());
    }
    let _ = err.write_all(b"\n");
}

// SAFETY: every method forwards to `System` with the caller's layout unchanged; the counters are
// atomics, and a refusal returns null as `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed on.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (every path above allocates there).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !take(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `dealloc`; `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Relaxed);
        }
        p
    }
}

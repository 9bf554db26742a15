//! The fuzz harness of fsvfm, on stable Rust (issue 23, Deliver 3).
//!
//! Every parser a user's file reaches ([`targets::all`]: `.npy`, safetensors, `.pth` zip +
//! pickle, PNG/JPEG/WebP, region maps, ffprobe output, manifest JSONL, score CSV, recipe TOML,
//! sidecar and legacy JSON) is fed mutations ([`mutate`]) of real seed files: the committed
//! fixtures, or what our own writers produce. Each case must
//! - not panic (a panic is caught and reported with its message),
//! - stay within its memory budget ([`alloc::Counting`] counts every allocation; one beyond
//!   the hard limit is refused, so a header's lie aborts the process rather than the machine),
//! - and, when refused, say why (a typed error with a non-empty message).
//!
//! `cargo test -p fsvfm-fuzz` runs a bounded campaign and replays `corpus/` (every case a
//! campaign ever found, kept as a regression test); `tools/fuzz.sh` runs long campaigns and
//! adds what they find to `corpus/`.

pub mod alloc;
pub mod mutate;
pub mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};

use fsvfm_data::outdir::fnv1a;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

pub use targets::Target;

/// Allocations beyond this many bytes above a case's start are refused outright.
pub const HARD_LIMIT: usize = 2 << 30;

/// What a case broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The parser panicked: the panic's message and location.
    Panic(String),
    /// The case allocated beyond its budget.
    Memory {
        /// Its peak above its start, bytes.
        peak: usize,
        /// Its budget, bytes.
        budget: usize,
        /// The largest single allocation over the budget, bytes.
        largest: usize,
    },
    /// Refused with an empty message.
    SilentError,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Panic(m) => write!(f, "panic: {m}"),
            Finding::Memory {
                peak,
                budget,
                largest,
            } => write!(
                f,
                "memory: peak {peak} bytes over a budget of {budget} (largest allocation over it: {largest})"
            ),
            Finding::SilentError => f.write_str("refused with an empty error message"),
        }
    }
}

impl Finding {
    /// What tells two findings apart: a panic's location, else the kind. One corpus case is kept
    /// per signature, so a long run does not fill the repository with one bug.
    pub fn signature(&self) -> String {
        match self {
            Finding::Panic(m) => m.lines().next().unwrap_or(m).to_string(),
            Finding::Memory { .. } => "memory".into(),
            Finding::SilentError => "silent error".into(),
        }
    }
}

/// How a case went when it broke nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed.
    Accepted,
    /// Refused with this message.
    Refused(String),
}

/// One case at a time: the allocator's counts are process-wide.
static CASE: Mutex<()> = Mutex::new(());
static IN_CASE: AtomicBool = AtomicBool::new(false);
/// The thread running the case: panics of other threads (another test's assertion) are printed
/// as usual, not taken for the case's.
static CASE_THREAD: Mutex<Option<std::thread::ThreadId>> = Mutex::new(None);
static PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();
/// The peak memory of the last case, bytes.
static LAST_PEAK: AtomicUsize = AtomicUsize::new(0);

/// While a case runs, a panic's message is kept for its [`Finding`] instead of printed.
fn install_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = IN_CASE.load(Ordering::SeqCst)
                && CASE_THREAD
                    .lock()
                    .is_ok_and(|t| *t == Some(std::thread::current().id()));
            if ours {
                if let Ok(mut p) = PANIC.lock() {
                    p.get_or_insert_with(|| info.to_string());
                }
            } else {
                default(info)
            }
        }));
    });
}

/// Runs `bytes` through `target` (files go to `scratch`), under its memory budget.
///
/// # Panics
/// When [`alloc::Counting`] is not the global allocator: memory could not be checked.
pub fn check(target: &Target, bytes: &[u8], scratch: &Path) -> Result<Outcome, Finding> {
    assert!(
        alloc::installed(),
        "fsvfm-fuzz needs `#[global_allocator] static A: fsvfm_fuzz::alloc::Counting = fsvfm_fuzz::alloc::Counting;`"
    );
    install_hook();
    let _one = CASE.lock().unwrap_or_else(|p| p.into_inner());
    let budget = (target.budget)(bytes.len());
    let label = format!("target {} (case {})", target.name, case_name(bytes));
    *PANIC.lock().unwrap_or_else(|p| p.into_inner()) = None;
    *CASE_THREAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::current().id());
    IN_CASE.store(true, Ordering::SeqCst);
    let base = alloc::begin(&label, budget, HARD_LIMIT);
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(bytes, scratch)));
    let usage = alloc::end(base);
    LAST_PEAK.store(usage.peak, Ordering::Relaxed);
    IN_CASE.store(false, Ordering::SeqCst);
    let panic = PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
    match result {
        Err(payload) => Err(Finding::Panic(panic.unwrap_or_else(|| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into())
        }))),
        Ok(_) if usage.over_budget > 0 => Err(Finding::Memory {
            peak: usage.peak,
            budget,
            largest: usage.largest_over,
        }),
        Ok(Ok(())) => Ok(Outcome::Accepted),
        Ok(Err(m)) if m.trim().is_empty() => Err(Finding::SilentError),
        Ok(Err(m)) => Ok(Outcome::Refused(m)),
    }
}

/// A case's file name in the corpus: 16 hex digits of its FNV-1a hash.
pub fn case_name(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(bytes))
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases run (seeds included).
    pub cases: usize,
    /// Cases parsed.
    pub accepted: usize,
    /// Cases refused with a message.
    pub refused: usize,
    /// Highest peak memory of a case, bytes (0 when no case ran).
    pub max_peak: usize,
    /// The cases that broke something, with what.
    pub findings: Vec<(Vec<u8>, Finding)>,
}

/// Runs every seed of `target` unmutated (each must be accepted), then `cases` mutated cases from
/// the seeds (deterministic in `seed`). `before` sees each case before it runs (the long-run
/// driver saves it, so an abort leaves the case behind).
pub fn campaign(
    target: &Target,
    cases: usize,
    seed: u64,
    scratch: &Path,
    mut before: impl FnMut(&[u8]),
) -> Report {
    let seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "target {} has no seeds", target.name);
    let mut report = Report::default();
    let mut rng = mutate::Rng::new(seed ^ fnv1a(target.name.as_bytes()));
    let mut run = |bytes: Vec<u8>, report: &mut Report| {
        before(&bytes);
        report.cases += 1;
        let result = check(target, &bytes, scratch);
        report.max_peak = report.max_peak.max(LAST_PEAK.load(Ordering::Relaxed));
        match result {
            Ok(Outcome::Accepted) => report.accepted += 1,
            Ok(Outcome::Refused(_)) => report.refused += 1,
            Err(f) => report.findings.push((bytes, f)),
        }
    };
    for (name, bytes) in &seeds {
        let before = report.accepted;
        run(bytes.clone(), &mut report);
        assert_eq!(
            report.accepted,
            before + 1,
            "target {}: seed {name} is not accepted (a harness that refuses its seeds tests nothing)",
            target.name
        );
    }
    for _ in 0..cases {
        let (_, base) = rng.pick(&seeds);
        let (_, other) = rng.pick(&seeds);
        let structured = target
            .structured
            .filter(|_| rng.below(3) == 0)
            .and_then(|s| s(base, &mut rng));
        let case = match structured {
            Some(case) => case,
            None => {
                let mut m = mutate::mutate(base, other, &mut rng, base.len() * 2 + 4096);
                if let Some(fix) = target.fixup.filter(|_| rng.below(2) == 0) {
                    fix(&mut m);
                }
                m
            }
        };
        run(case, &mut report);
    }
    report
}

/// The corpus of found cases: `corpus/<target>/<case_name>`, replayed by the tests.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Every case in `dir/<target>/`, `(file, bytes)`, sorted by file name.
pub fn corpus_cases(dir: &Path, target: &str) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let d = dir.join(target);
    if !d.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(&p).map(|b| (p, b)))
        .collect()
}

/// Saves a found case as `dir/<target>/<signature hash>-<case_name>` (atomically), unless the
/// corpus already holds a case of that [`Finding::signature`]: the path saved, or `None`.
pub fn save_case(
    dir: &Path,
    target: &str,
    bytes: &[u8],
    finding: &Finding,
) -> std::io::Result<Option<PathBuf>> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    let sig = &case_name(finding.signature().as_bytes())[..8];
    let known = std::fs::read_dir(&d)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with(sig));
    if known {
        return Ok(None);
    }
    let p = d.join(format!("{sig}-{}", case_name(bytes)));
    fsvfm_data::atomic::write_atomic(&p, bytes, true)?;
    Ok(Some(p))
}

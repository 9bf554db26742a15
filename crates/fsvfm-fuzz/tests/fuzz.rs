//! The bounded fuzz campaign of `.ci/run` and the corpus replay (issue 23, Deliver 3).
//!
//! `FSVFM_FUZZ_CASES` sets the mutated cases per target (default 2000); `tools/fuzz.sh` runs
//! long campaigns with the `fsvfm-fuzz` binary.

use std::path::Path;

use fsvfm_fuzz::{Finding, Outcome, Target, check, targets};

#[global_allocator]
static ALLOC: fsvfm_fuzz::alloc::Counting = fsvfm_fuzz::alloc::Counting;

fn cases() -> usize {
    std::env::var("FSVFM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn fake(name: &'static str, run: fn(&[u8], &Path) -> Result<(), String>) -> Target {
    Target {
        name,
        about: "a harness self-test",
        seeds: || vec![("seed".into(), b"seed".to_vec())],
        run,
        budget: |_| 8 << 20,
        fixup: None,
        structured: None,
    }
}

/// The harness itself can fail: a panic, an allocation over the budget, a header's lie that
/// would allocate terabytes, and an empty error are each found; a plain refusal is not.
#[test]
fn harness_finds_panics_memory_and_silent_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let panics = fake("panics", |b, _| {
        let n = b.len();
        let v: Vec<u8> = Vec::new();
        let _ = v[n];
        Ok(())
    });
    match check(&panics, b"x", d) {
        Err(Finding::Panic(m)) => assert!(m.contains("index out of bounds"), "{m}"),
        other => panic!("{other:?}"),
    }
    let hog = fake("hog", |_, _| {
        let v = std::hint::black_box(vec![1u8; 64 << 20]);
        Err(format!("refused after {} bytes", v.len()))
    });
    match check(&hog, b"x", d) {
        Err(Finding::Memory { peak, budget, .. }) => {
            assert!(peak >= 64 << 20 && budget == 8 << 20, "{peak} {budget}")
        }
        other => panic!("{other:?}"),
    }
    // Beyond the hard limit the allocation is refused: `try_reserve` sees it fail (an infallible
    // allocation would abort, which `tools/fuzz.sh` records).
    let liar = fake("liar", |_, _| {
        let mut v: Vec<u8> = Vec::new();
        match v.try_reserve(1 << 40) {
            Ok(()) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(matches!(check(&liar, b"x", d), Err(Finding::Memory { .. })));
    let silent = fake("silent", |_, _| Err("  ".into()));
    assert_eq!(check(&silent, b"x", d), Err(Finding::SilentError));
    let fine = fake("fine", |b, _| Err(format!("not a seed: {} bytes", b.len())));
    assert_eq!(
        check(&fine, b"abc", d),
        Ok(Outcome::Refused("not a seed: 3 bytes".into()))
    );
}

/// Every target: its seeds accepted, then mutated cases with nothing found. The mutations must
/// reach the error paths (some refused) and keep some files valid (not only the seeds accepted
/// for the formats without checksums), or the campaign would test nothing.
#[test]
fn bounded_campaign_over_every_parser_finds_nothing() {
    let n = cases();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for t in targets::all() {
        let r = fsvfm_fuzz::campaign(&t, n, 20261202, dir.path(), |_| {});
        eprintln!(
            "{:16} {} cases: {} accepted, {} refused, peak {:.1} MiB, {} found",
            t.name,
            r.cases,
            r.accepted,
            r.refused,
            r.max_peak as f64 / (1 << 20) as f64,
            r.findings.len()
        );
        let seeds = (t.seeds)().len();
        assert_eq!(r.cases, seeds + n);
        assert!(r.refused > 0, "{}: no mutated case was refused", t.name);
        assert!(r.accepted >= seeds);
        for (case, f) in r.findings {
            failures.push(format!(
                "{}: {f} (save with: fsvfm-fuzz --target {} --seed 20261202 --cases {n}; case {})",
                t.name,
                t.name,
                fsvfm_fuzz::case_name(&case)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every case a campaign ever found (`corpus/<target>/`) is now handled: no panic, within
/// budget, refused with a message or accepted.
#[test]
fn corpus_of_found_cases_replays_clean() {
    let corpus = fsvfm_fuzz::corpus_dir();
    let all = targets::all();
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        assert!(
            all.iter().any(|t| t.name == name),
            "corpus/{name} is not a target"
        );
    }
    for t in &all {
        for (path, bytes) in fsvfm_fuzz::corpus_cases(&corpus, t.name).unwrap() {
            replayed += 1;
            if let Err(f) = check(t, &bytes, dir.path()) {
                failures.push(format!("{}: {f}", path.display()));
            }
        }
    }
    eprintln!("replayed {replayed} corpus cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

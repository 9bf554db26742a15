//! `fsvfm-fuzz`: long fuzz campaigns over every parser (see the library docs and
//! `tools/fuzz.sh`, which restarts it after an abort and keeps the aborting case).
//!
//! ```text
//! fsvfm-fuzz [--target NAME]... [--cases N] [--seconds S] [--seed N] [--corpus DIR] [--current DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: fsvfm_fuzz::alloc::Counting = fsvfm_fuzz::alloc::Counting;

const USAGE: &str = "usage: fsvfm-fuzz [--target NAME]... [--cases N] [--seconds S] [--seed N] [--corpus DIR] [--current DIR]
  --target   a parser to fuzz (repeatable; default all): see --list
  --cases    mutated cases per target per round (default 2000)
  --seconds  keep running rounds (new seeds) until this many seconds have passed (default: one round)
  --seed     the first round's seed (default 1); round k uses seed + k
  --corpus   where found cases are saved, one folder per target (default: the crate's corpus/)
  --current  each case is written to DIR/<target> before it runs, so a case that aborts the process is left behind
  --list     print the targets and exit
  --case-name FILE  print the corpus name of a case (its hash) and exit";

struct Args {
    targets: Vec<String>,
    cases: usize,
    seconds: Option<u64>,
    seed: u64,
    corpus: PathBuf,
    current: Option<PathBuf>,
}

fn parse() -> Result<Option<Args>, String> {
    let mut a = Args {
        targets: Vec::new(),
        cases: 2000,
        seconds: None,
        seed: 1,
        corpus: fsvfm_fuzz::corpus_dir(),
        current: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--list" {
            for t in fsvfm_fuzz::targets::all() {
                println!("{:16} {}", t.name, t.about);
            }
            return Ok(None);
        }
        if flag == "--case-name" {
            let file = it.next().ok_or("--case-name needs a file")?;
            let bytes = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
            println!("{}", fsvfm_fuzz::case_name(&bytes));
            return Ok(None);
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return Ok(None);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v:?}: not a whole number"))
        };
        match flag.as_str() {
            "--target" => a.targets.push(value),
            "--cases" => a.cases = number(&value)? as usize,
            "--seconds" => a.seconds = Some(number(&value)?),
            "--seed" => a.seed = number(&value)?,
            "--corpus" => a.corpus = value.into(),
            "--current" => a.current = Some(value.into()),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fsvfm-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let all = fsvfm_fuzz::targets::all();
    let targets: Vec<_> = all
        .iter()
        .filter(|t| args.targets.is_empty() || args.targets.iter().any(|n| n == t.name))
        .collect();
    if let Some(bad) = args
        .targets
        .iter()
        .find(|n| !all.iter().any(|t| t.name == n.as_str()))
    {
        eprintln!("fsvfm-fuzz: unknown target {bad:?} (see --list)");
        return ExitCode::from(2);
    }
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fsvfm-fuzz: no scratch folder: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut found = 0usize;
    let mut round = 0u64;
    loop {
        let seed = args.seed.wrapping_add(round);
        for t in &targets {
            let current = args.current.as_ref().map(|d| d.join(t.name));
            let started = Instant::now();
            let report = fsvfm_fuzz::campaign(t, args.cases, seed, scratch.path(), |case| {
                if let Some(p) = &current {
                    // A plain write: the file is read back only after an abort.
                    let _ = std::fs::write(p, case);
                }
            });
            if let Some(p) = &current {
                let _ = std::fs::remove_file(p);
            }
            println!(
                "{:16} seed {seed}: {} cases ({} accepted, {} refused), peak {:.1} MiB, {} found, {:.1} s",
                t.name,
                report.cases,
                report.accepted,
                report.refused,
                report.max_peak as f64 / (1 << 20) as f64,
                report.findings.len(),
                started.elapsed().as_secs_f64()
            );
            for (case, finding) in &report.findings {
                found += 1;
                match fsvfm_fuzz::save_case(&args.corpus, t.name, case, finding) {
                    Ok(Some(p)) => println!("  {finding}\n    saved {}", p.display()),
                    Ok(None) => println!("  {finding}\n    (the corpus has a case of this kind)"),
                    Err(e) => println!("  {finding}\n    (not saved: {e})"),
                }
            }
        }
        round += 1;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    if found > 0 {
        println!("{found} finding(s); replay them with `cargo test -p fsvfm-fuzz --release`");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

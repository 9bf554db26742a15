//! `fsvfm protocol`: a transfer protocol from one TOML file — train on each training set
//! (fine-tuning or FS-Adapter, several seeds), evaluate every checkpoint on every test set, and
//! write the results table in the papers' layout (rows = training setups, columns = test sets,
//! AUC and EER in %, mean ± std over seeds). Cross-dataset DfD ("train on FF++, test on CDF,
//! DFDC, …"), DiFF subsets and leave-one-domain-out FAS lists are all this shape.
//!
//! ```toml
//! method = "adapt"               # or "finetune"
//! checkpoint = "runs/tiny/checkpoint-29/online.safetensors"
//! seeds = [0, 1, 2]
//! [options]                      # any flag of the command, without the dashes
//! recipe = "tiny"
//! augment = "none"
//! [[train]]
//! name = "SBI"
//! data = "sets/train-sbi"        # paths are relative to this file
//! val = "sets/val-sbi"           # optional (else --val-fraction of the data)
//! [[test]]
//! name = "SBI"
//! data = "sets/test-sbi"
//! [[test]]
//! name = "swap"
//! data = "sets/test-swap"
//! ```
//!
//! Each run lands in `OUTPUT/<train>/seed-<k>/` (the command's own outputs) and its evaluation in
//! `…/eval/` (`report.md`, `metrics.json`, ROC curves); a finished run (its `metrics.json`
//! present) is not redone, so an interrupted protocol continues where it stopped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Deserialize;

/// Arguments of `fsvfm protocol`.
#[derive(Args, Debug)]
pub struct ProtocolArgs {
    /// The protocol (TOML; see `fsvfm protocol --help` or README).
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder: results.md, results.json, one folder per training set and seed.
    #[arg(long)]
    pub output: PathBuf,
}

/// One named data set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSet {
    name: String,
    data: PathBuf,
    #[serde(default)]
    val: Option<PathBuf>,
}

/// The protocol file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Protocol {
    method: String,
    checkpoint: PathBuf,
    #[serde(default)]
    model: Option<String>,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    /// The tuning flags of `adapt` / `finetune`, without the dashes ([`tuning`] reads them).
    #[serde(default)]
    options: toml::Table,
    train: Vec<DataSet>,
    test: Vec<DataSet>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// A protocol's `[options]` as the typed tuning flags; a key that is no such flag is named as
/// the flag it would be.
fn tuning(options: &toml::Table, config: &Path, method: &str) -> Result<crate::adapt::Tuning> {
    let flags = <crate::adapt::Tuning as clap::Args>::augment_args(clap::Command::new(""));
    let known: Vec<&str> = flags.get_arguments().filter_map(|a| a.get_long()).collect();
    for k in options.keys() {
        ensure!(
            known.contains(&k.as_str()),
            "[options] of {}: --{k} is not a tuning flag of `{method}` (those are --{})",
            config.display(),
            known.join(", --")
        );
    }
    toml::Value::Table(options.clone())
        .try_into()
        .with_context(|| format!("[options] of {}", config.display()))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Runs `fsvfm protocol`.
pub fn protocol_cmd(a: ProtocolArgs) -> Result<()> {
    let text = fsvfm_data::input::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let p: Protocol =
        toml::from_str(&text).with_context(|| format!("parsing {}", a.config.display()))?;
    ensure!(
        p.method == "adapt" || p.method == "finetune",
        "method must be \"adapt\" or \"finetune\", not {:?}",
        p.method
    );
    ensure!(
        !p.train.is_empty() && !p.test.is_empty(),
        "the protocol needs [[train]] and [[test]] sets"
    );
    ensure!(!p.seeds.is_empty(), "seeds must not be empty");
    for (what, sets) in [("train", &p.train), ("test", &p.test)] {
        let mut names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        ensure!(names.len() == sets.len(), "[[{what}]] names must be unique");
        // Names become folders and file names under --output: nothing that leaves it.
        for s in sets.iter() {
            ensure!(
                fsvfm::data::outdir::safe_file_part(&s.name).as_deref() == Some(s.name.as_str()),
                "[[{what}]] name {:?}: use letters, digits, '-', '_' and '.' only, not starting with '.'",
                s.name
            );
        }
    }
    let tuning = tuning(&p.options, &a.config, &p.method)?;
    let base = a.config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let checkpoint = resolve(&base, &p.checkpoint);
    let _lock = fsvfm::data::outdir::lock_dir(&a.output, "fsvfm protocol")?;
    // results[train][test] = per-seed (auc, eer)
    let mut results: Vec<Vec<Vec<(f64, f64)>>> =
        vec![vec![Vec::new(); p.test.len()]; p.train.len()];
    let mut runs = serde_json::Map::new();
    for (ti, train) in p.train.iter().enumerate() {
        for &seed in &p.seeds {
            let run_dir = a.output.join(&train.name).join(format!("seed-{seed}"));
            let eval_dir = run_dir.join("eval");
            let metrics_path = eval_dir.join("metrics.json");
            if !metrics_path.is_file() {
                eprintln!("== {} on {}, seed {seed} ==", p.method, train.name);
                // A run interrupted before its evaluation starts over.
                if run_dir.exists() {
                    std::fs::remove_dir_all(&run_dir)
                        .with_context(|| format!("clearing {}", run_dir.display()))?;
                }
                let args = crate::adapt::TransferArgs {
                    checkpoint: checkpoint.clone(),
                    model: p.model.clone(),
                    data: resolve(&base, &train.data),
                    val: train.val.as_ref().map(|v| resolve(&base, v)),
                    output: run_dir.clone(),
                    seed,
                    resume: false,
                    tuning: tuning.clone(),
                };
                if p.method == "adapt" {
                    crate::adapt::adapt_cmd(crate::adapt::AdaptArgs { common: args })?;
                } else {
                    crate::adapt::finetune_cmd(crate::adapt::FinetuneArgs { common: args })?;
                }
                let data = p
                    .test
                    .iter()
                    .map(|t| format!("{}={}", t.name, resolve(&base, &t.data).display()))
                    .collect();
                crate::eval::eval(crate::eval::EvalArgs {
                    ck: crate::eval::CheckpointArgs {
                        checkpoint: run_dir.join("checkpoint-min_val_loss.safetensors"),
                        model: None,
                        mean_std: None,
                        fake_index: None,
                    },
                    data,
                    output: eval_dir.clone(),
                    split: "test".into(),
                    root: None,
                    batch_size: 16,
                })?;
            }
            let doc: serde_json::Value = serde_json::from_slice(
                &fsvfm_data::input::read(&metrics_path, fsvfm_data::input::Kind::Text)
                    .with_context(|| format!("reading {}", metrics_path.display()))?,
            )?;
            for (k, test) in p.test.iter().enumerate() {
                let m = &doc["sets"][&test.name];
                let (auc, eer) = (m["auc"].as_f64(), m["eer"].as_f64());
                let (Some(auc), Some(eer)) = (auc, eer) else {
                    bail!(
                        "{}: no AUC/EER for {} ({})",
                        metrics_path.display(),
                        test.name,
                        m
                    );
                };
                results[ti][k].push((auc, eer));
            }
            runs.insert(format!("{}/seed-{seed}", train.name), doc["sets"].clone());
        }
    }
    let md = results_table(&p, &results);
    let out = a.output.join("results.md");
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    let json = serde_json::json!({
        "method": p.method,
        "checkpoint": checkpoint.display().to_string(),
        "seeds": p.seeds,
        "runs": runs,
    });
    std::fs::write(
        a.output.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("{md}");
    Ok(())
}

/// The papers' layout: one row per training set, one column per test set and the average.
fn results_table(p: &Protocol, results: &[Vec<Vec<(f64, f64)>>]) -> String {
    let mut md = format!(
        "# {} results\n\nEncoder `{}`; {} seed(s) {:?}; mean ± std over seeds, in %. Scores are P(fake).\n",
        p.method,
        p.checkpoint.display(),
        p.seeds.len(),
        p.seeds
    );
    for (label, pick) in [("AUC", 0usize), ("EER", 1)] {
        let _ = write!(md, "\n| {label} (train → test) |");
        for t in &p.test {
            let _ = write!(md, " {} |", t.name);
        }
        md += " avg |\n|---|";
        md += &"---|".repeat(p.test.len() + 1);
        md += "\n";
        for (ti, train) in p.train.iter().enumerate() {
            let _ = write!(md, "| {} |", train.name);
            // The average over test sets, per seed, then its spread over seeds.
            let per_seed_avg: Vec<f64> = (0..p.seeds.len())
                .map(|s| {
                    results[ti]
                        .iter()
                        .map(|r| if pick == 0 { r[s].0 } else { r[s].1 })
                        .sum::<f64>()
                        / p.test.len() as f64
                })
                .collect();
            for r in &results[ti] {
                let v: Vec<f64> = r
                    .iter()
                    .map(|x| if pick == 0 { x.0 } else { x.1 })
                    .collect();
                let (m, s) = fsvfm::fas::mean_sd(&v);
                let _ = write!(md, " {:.2} ± {:.2} |", 100.0 * m, 100.0 * s);
            }
            let (m, s) = fsvfm::fas::mean_sd(&per_seed_avg);
            let _ = writeln!(md, " {:.2} ± {:.2} |", 100.0 * m, 100.0 * s);
        }
    }
    md
}

//! `fsvfm eval-scores`: the papers' metrics from a score file.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;
use fsvfm_eval::{
    BootstrapConfig, ResampleUnit, bootstrap_metrics, evaluate, format_intervals, format_table,
    read_scores_csv,
};

/// Arguments of `fsvfm eval-scores`.
#[derive(Args, Debug)]
pub struct EvalScoresArgs {
    /// CSV with a header: `label` (1 = fake/attack, 0 = real), `score` (higher = more likely fake),
    /// optionally a video id column.
    #[arg(long)]
    pub scores: PathBuf,
    /// Column holding the video id, for video-level metrics (mean of frame scores per video).
    /// Default: `video` when the file has it.
    #[arg(long)]
    pub video_column: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also compute percentile bootstrap 95% intervals from this many resamples
    /// (of videos when video ids are present, else of frames).
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `fsvfm eval-scores`.
pub fn eval_scores(a: EvalScoresArgs) -> Result<()> {
    let set = read_scores_csv(&a.scores, a.video_column.as_deref())?;
    let metrics = evaluate(&set)?;
    let report = match a.bootstrap {
        Some(n) => {
            ensure!(n > 0, "--bootstrap needs at least one resample");
            let unit = if set.has_videos() {
                ResampleUnit::Videos
            } else {
                ResampleUnit::Frames
            };
            let cfg = BootstrapConfig {
                n_resamples: n,
                confidence: 0.95,
                seed: a.seed,
                unit,
            };
            Some(bootstrap_metrics(&set, &cfg)?)
        }
        None => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&metrics)?;
        if let Some(r) = &report {
            // {"auc": {"lower", "upper", ...}, ...}: keyed like the metrics themselves.
            let mut ci = serde_json::Map::new();
            for (kind, interval) in &r.intervals {
                let key = serde_json::to_value(kind)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                ci.insert(key, serde_json::to_value(interval)?);
            }
            v["ci95"] = serde_json::Value::Object(ci);
            v["bootstrap"] = serde_json::to_value(r.config)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", format_table(&metrics));
        if let Some(r) = &report {
            println!("{}", format_intervals(r));
        }
    }
    Ok(())
}

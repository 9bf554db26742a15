//! `fsvfm eval-scores` (the papers' metrics from a score file) and `fsvfm eval` (score test sets
//! with a classifier checkpoint).

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
    #[arg(value_parser = crate::flags::RESAMPLES, long)]
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

/// Arguments of `fsvfm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The classifier: official fine-tuned `.pth` (DfD/DiFF head or FS-Adapter) or ours.
    #[command(flatten)]
    pub ck: CheckpointArgs,
    /// Test sets: ImageFolder trees (real*/, fake*/), JSONL manifests, DeepfakeBench JSONs or FSFM
    /// anti-spoofing split files (NAME_{fake|real}_test.txt: the pair is read); each is reported
    /// separately. `NAME=PATH` names one.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<String>,
    /// Output folder: metrics.json, report.md, scores-NAME.csv, roc-NAME.{png,svg}, hist-NAME.{png,svg}.
    #[arg(long)]
    pub output: PathBuf,
    /// DeepfakeBench split to read.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Folder that DeepfakeBench (or FAS split-file) frame paths are relative to (FAS default:
    /// the `frame/` folder beside the `txt/` folder).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 16)]
    pub batch_size: usize,
}

/// Scores of one test set.
struct Scored {
    name: String,
    samples: Vec<fsvfm_data::EvalSample>,
    scores: Vec<f64>,
    skipped: Vec<fsvfm_data::Skipped>,
}

/// `--model` and `--mean-std` values: a preset or JSON file, and `vggface2` or a
/// `pretrain_ds_mean_std.txt`.
pub(crate) fn model_and_mean_std(
    model: Option<&str>,
    mean_std: Option<&str>,
) -> Result<(Option<fsvfm_model::VitConfig>, Option<fsvfm_data::MeanStd>)> {
    Ok((
        model.map(fsvfm::model_config).transpose()?,
        mean_std.map(fsvfm::mean_std_named).transpose()?,
    ))
}

/// The checkpoint flags of the commands that load one detector (`predict`, `calibrate`, `serve`).
#[derive(Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// Classifier checkpoint (official fine-tuned `.pth`, FS-Adapter, or ours with its fsvfm.json).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture: a preset or JSON config; default: the checkpoint's fsvfm.json, else its
    /// tensor shapes (official `.pth` files).
    #[arg(long)]
    pub model: Option<String>,
    /// Normalisation (`pretrain_ds_mean_std.txt` or `vggface2`); default: the checkpoint's
    /// fsvfm.json (needed for official `.pth` files).
    #[arg(long)]
    pub mean_std: Option<String>,
    /// Index of the "fake" class in the head; default: the sidecar's, else 0 (official FSFM heads).
    #[arg(long)]
    pub fake_index: Option<usize>,
}

impl CheckpointArgs {
    /// The `DetectorOptions` these flags say, over `options`.
    pub(crate) fn options(
        &self,
        options: fsvfm::DetectorOptions,
    ) -> Result<fsvfm::DetectorOptions> {
        let (model, mean_std) =
            model_and_mean_std(self.model.as_deref(), self.mean_std.as_deref())?;
        Ok(fsvfm::DetectorOptions {
            model,
            mean_std,
            fake_index: self.fake_index,
            device: Some(crate::runtime::device()),
            ..options
        })
    }

    /// Loads the detector; reports what it loaded on stderr.
    pub(crate) fn load(&self, options: fsvfm::DetectorOptions) -> Result<fsvfm::Detector> {
        let d = fsvfm::Detector::load_with(&self.checkpoint, &self.options(options)?)?;
        eprintln!("loaded {}: {}", self.checkpoint.display(), d.description());
        Ok(d)
    }
}

/// The `--data NAME=PATH` (or `PATH`, named by its stem) specs as `(name, path)`, all checked
/// before any scoring: names made file-name safe ([`fsvfm::data::outdir::safe_file_part`]: they
/// name the report's files, which must stay inside the output folder), two sets of one name
/// refused, every path present.
fn set_specs(specs: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for spec in specs {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.to_string(), PathBuf::from(p)),
            None => {
                let p = PathBuf::from(spec);
                (
                    p.file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .to_string(),
                    p,
                )
            }
        };
        let Some(safe) = fsvfm::data::outdir::safe_file_part(&name) else {
            anyhow::bail!("--data {spec}: the set needs a name (NAME=PATH)");
        };
        if !path.exists() {
            anyhow::bail!("--data {spec}: {} does not exist", path.display());
        }
        if let Some((_, other)) = out.iter().find(|(n, _)| *n == safe) {
            anyhow::bail!(
                "--data {spec}: the name `{safe}` is taken by {} already; give each set its own NAME=",
                other.display()
            );
        }
        out.push((safe, path));
    }
    Ok(out)
}

/// `fsvfm eval`.
pub fn eval(a: EvalArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    let sets = set_specs(&a.data)?;
    let clf = a.ck.load(fsvfm::DetectorOptions {
        batch_size: a.batch_size,
        ..Default::default()
    })?;
    let _lock = fsvfm::data::outdir::lock_dir(&a.output, "fsvfm eval")?;
    let mut results = Vec::new();
    for (name, path) in sets {
        let set = clf.load_eval_set(&path, &a.split, a.root.as_deref())?;
        let scores: Vec<f64> = clf
            .score_normalised(&set.pixels)?
            .into_iter()
            .map(f64::from)
            .collect();
        eprintln!(
            "{name}: {} images scored, {} left out",
            set.samples.len(),
            set.skipped.len()
        );
        results.push(Scored {
            name,
            samples: set.samples,
            scores,
            skipped: set.skipped,
        });
    }
    crate::report::write_eval_report(
        &a.output,
        &a.ck.checkpoint,
        clf.calibration(),
        &results
            .iter()
            .map(|r| crate::report::SetScores {
                name: &r.name,
                images: r.samples.iter().map(|s| s.image.as_path()).collect(),
                labels: r.samples.iter().map(|s| s.label).collect(),
                videos: r.samples.iter().map(|s| s.video.clone()).collect(),
                scores: &r.scores,
                skipped: &r.skipped,
            })
            .collect::<Vec<_>>(),
    )
}

/// Arguments of `fsvfm calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The checkpoint; the calibration goes into the `fsvfm.json` of its folder (made for an
    /// official `.pth` from `--model`, `--mean-std`, `--fake-index`).
    #[command(flatten)]
    pub ck: CheckpointArgs,
    /// Labelled validation set of face crops (any form `fsvfm eval` reads), not the test set.
    #[arg(long)]
    pub data: PathBuf,
    /// Threshold at this false-positive rate on the real faces.
    #[arg(long, default_value_t = 0.05, conflicts_with = "eer")]
    pub target_fpr: f64,
    /// Threshold at the equal error rate instead.
    #[arg(long)]
    pub eer: bool,
    /// DeepfakeBench split to read.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Folder relative frame paths are read from.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(value_parser = crate::flags::BATCH, long, default_value_t = 16)]
    pub batch_size: usize,
}

/// `fsvfm calibrate`.
pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let out = fsvfm::calibrate::calibrate(&fsvfm::calibrate::CalibrateJob {
        checkpoint: a.ck.checkpoint.clone(),
        options: a.ck.options(fsvfm::DetectorOptions {
            batch_size: a.batch_size,
            ..Default::default()
        })?,
        data: a.data.clone(),
        split: a.split.clone(),
        root: a.root.clone(),
        target: if a.eer {
            fsvfm::calibrate::Target::Eer
        } else {
            fsvfm::calibrate::Target::Fpr(a.target_fpr)
        },
    })?;
    for s in &out.skipped {
        eprintln!("left out {}: {}", s.path, s.reason);
    }
    let c = &out.calibration;
    let op = c
        .operating_point
        .as_ref()
        .expect("calibrate sets the operating point");
    eprintln!(
        "temperature {:.4} (validation NLL {:.4} -> {:.4}); threshold {:.4} ({}), suspect from {:.4}; on {} reals / {} fakes: TPR {:.4}, FPR {:.4}; written to {}",
        c.temperature_or_one(),
        out.nll_before,
        out.nll_after,
        c.decision_threshold(),
        match op.target_fpr {
            Some(f) => format!("target FPR {f}"),
            None => "EER".into(),
        },
        c.suspect_from(),
        op.n_real,
        op.n_fake,
        op.tpr,
        op.fpr,
        out.sidecar.display()
    );
    println!("{}", serde_json::to_string_pretty(c)?);
    Ok(())
}

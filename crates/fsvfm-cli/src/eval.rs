//! `fsvfm eval-scores` (the papers' metrics from a score file) and `fsvfm eval` (score test sets
//! with a classifier checkpoint).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
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

/// Arguments of `fsvfm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Classifier checkpoint: official fine-tuned `.pth` (DfD/DiFF head or FS-Adapter) or safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture: a preset or a JSON config (readout and class count come from the file);
    /// default: the `model.json` / `state.json` next to the checkpoint, else vit_base_patch16.
    #[arg(long)]
    pub model: Option<String>,
    /// Test sets: ImageFolder trees (real*/, fake*/), JSONL manifests, DeepfakeBench JSONs or FSFM
    /// anti-spoofing split files (NAME_{fake|real}_test.txt: the pair is read); each is reported
    /// separately. `NAME=PATH` names one.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<String>,
    /// Output folder: metrics.json, report.md, scores-NAME.csv, roc-NAME.png, hist-NAME.png.
    #[arg(long)]
    pub output: PathBuf,
    /// Normalisation: a `pretrain_ds_mean_std.txt`, or `vggface2`; default: the file next to the
    /// checkpoint, else VGGFace2's.
    #[arg(long)]
    pub mean_std: Option<String>,
    /// Index of the "fake" class in the head. Official FSFM heads: 0 (ImageFolder order fake, real).
    #[arg(long, default_value_t = 0)]
    pub fake_index: usize,
    /// DeepfakeBench split to read.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Folder that DeepfakeBench (or FAS split-file) frame paths are relative to (FAS default:
    /// the `frame/` folder beside the `txt/` folder).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

/// Scores of one test set.
struct Scored {
    name: String,
    samples: Vec<fsvfm_data::EvalSample>,
    scores: Vec<f64>,
    skipped: Vec<fsvfm_data::Skipped>,
}

/// Normalisation for a checkpoint: `arg` (`vggface2` or a file), else the
/// `pretrain_ds_mean_std.txt` next to the checkpoint or one folder up (our run folders), else
/// VGGFace2's; with a description of where it came from.
pub(crate) fn mean_std_near(
    checkpoint: &std::path::Path,
    arg: Option<&str>,
) -> Result<(fsvfm_data::MeanStd, String)> {
    if let Some(s) = arg {
        return Ok((mean_std_arg(s)?, s.into()));
    }
    let dir = checkpoint.parent().unwrap_or(std::path::Path::new("."));
    for cand in [
        dir.join("pretrain_ds_mean_std.txt"),
        dir.join("../pretrain_ds_mean_std.txt"),
    ] {
        if cand.is_file() {
            let ms = fsvfm_data::MeanStd::read(&cand).map_err(anyhow::Error::msg)?;
            return Ok((ms, cand.display().to_string()));
        }
    }
    Ok((
        fsvfm_data::MeanStd::VGGFACE2,
        "VGGFace2 (no pretrain_ds_mean_std.txt next to the checkpoint)".into(),
    ))
}

/// A `--mean-std` value: `vggface2` or a `pretrain_ds_mean_std.txt`.
pub(crate) fn mean_std_arg(s: &str) -> Result<fsvfm_data::MeanStd> {
    if s.eq_ignore_ascii_case("vggface2") {
        return Ok(fsvfm_data::MeanStd::VGGFACE2);
    }
    fsvfm_data::MeanStd::read(std::path::Path::new(s)).map_err(anyhow::Error::msg)
}

/// The `state.json` of our pre-training checkpoint folder holding `checkpoint`, if there is one.
pub(crate) fn run_state_near(
    checkpoint: &std::path::Path,
) -> Result<Option<fsvfm_train::checkpoint::TrainState>> {
    let dir = checkpoint.parent().unwrap_or(std::path::Path::new("."));
    if !dir.join("state.json").is_file() {
        return Ok(None);
    }
    Ok(Some(fsvfm_train::checkpoint::read_state(dir)?))
}

/// The encoder config for a checkpoint: `--model` (preset or JSON file), else the `model.json`
/// (written by `fsvfm adapt`) or `state.json` (written by `fsvfm pretrain`) next to it, else
/// ViT-B/16.
pub(crate) fn vit_config_near(
    checkpoint: &std::path::Path,
    model: Option<&str>,
) -> Result<fsvfm_model::VitConfig> {
    if let Some(m) = model {
        return crate::forward::resolve_config(m);
    }
    let dir = checkpoint.parent().unwrap_or(std::path::Path::new("."));
    let json = dir.join("model.json");
    if json.is_file() {
        return crate::forward::resolve_config(&json.to_string_lossy());
    }
    if let Some(state) = run_state_near(checkpoint)? {
        return Ok(state.recipe.model.encoder);
    }
    Ok(fsvfm_model::VitConfig::preset("vit_base_patch16").expect("preset"))
}

/// A classifier checkpoint ready to score normalised face crops with P(fake).
pub(crate) struct Classifier {
    model: crate::forward::Loaded,
    classes: usize,
    fake_index: usize,
    /// Input side in pixels.
    pub size: usize,
    /// The normalisation its inputs need.
    pub norm: fsvfm_data::MeanStd,
}

impl Classifier {
    /// Loads `checkpoint` (architecture and normalisation found as `vit_config_near` and
    /// `mean_std_near` do) and checks it has a head with class `fake_index`; reports what it
    /// loaded on stderr.
    pub fn load(
        checkpoint: &std::path::Path,
        model: Option<&str>,
        mean_std: Option<&str>,
        fake_index: usize,
    ) -> Result<Self> {
        use crate::forward::load;
        let cfg = vit_config_near(checkpoint, model)?;
        let size = cfg.img_size;
        let wf = fsvfm_model::WeightFile::open(checkpoint)?;
        let (model, what) = load(&wf, cfg)?;
        let classes = model.classes();
        ensure!(
            classes >= 2 && fake_index < classes,
            "{} has {classes} output classes: scoring needs a classifier head with class {fake_index} = fake (a pre-training checkpoint must be fine-tuned first)",
            checkpoint.display(),
        );
        let (norm, norm_src) = mean_std_near(checkpoint, mean_std)?;
        eprintln!(
            "loaded {}: {what}; normalisation: {norm_src}",
            checkpoint.display()
        );
        Ok(Classifier {
            model,
            classes,
            fake_index,
            size,
            norm,
        })
    }

    fn input(&self, pixels: &[f32]) -> burn::tensor::Tensor<4> {
        let per = 3 * self.size * self.size;
        burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(
                pixels.to_vec(),
                [pixels.len() / per, 3, self.size, self.size],
            ),
            &crate::runtime::device(),
        )
    }

    /// P(fake) of each image in `pixels` (`[n, 3, size, size]` normalised, flattened), in
    /// forward passes of at most `batch_size` images.
    pub fn p_fake(&self, pixels: &[f32], batch_size: usize) -> Result<Vec<f64>> {
        use burn::tensor::activation::softmax;
        let per = 3 * self.size * self.size;
        let mut scores = Vec::with_capacity(pixels.len() / per);
        for chunk in pixels.chunks(batch_size.max(1) * per) {
            let x = self.input(chunk);
            let logits = self.model.logits(x);
            let p = softmax(logits, 1)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading scores: {e:?}"))?;
            scores.extend(
                p.chunks(self.classes)
                    .map(|row| row[self.fake_index] as f64),
            );
        }
        Ok(scores)
    }

    /// Last-block class-token attention over the patches (head-averaged), `[n, L]` flattened,
    /// for heat maps.
    pub fn attention(&self, pixels: &[f32]) -> Result<Vec<f32>> {
        let x = self.input(pixels);
        let maps = self.model.attention(x);
        maps.into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading attention: {e:?}"))
    }
}

/// `fsvfm eval`.
pub fn eval(a: EvalArgs) -> Result<()> {
    ensure!(a.batch_size > 0, "--batch-size must be at least 1");
    let clf = Classifier::load(
        &a.checkpoint,
        a.model.as_deref(),
        a.mean_std.as_deref(),
        a.fake_index,
    )?;
    let (size, norm) = (clf.size, clf.norm);
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut results = Vec::new();
    for spec in &a.data {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.to_string(), PathBuf::from(p)),
            None => {
                let p = PathBuf::from(spec);
                let n = p
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                (n, p)
            }
        };
        let (all, mut skipped) = fsvfm_data::read_eval_set(&path, &a.split, a.root.as_deref())
            .map_err(anyhow::Error::msg)?;
        // Decode in parallel; unreadable images are recorded and left out.
        let decoded: Vec<Result<Vec<f32>, String>> = {
            use rayon::prelude::*;
            all.par_iter()
                .map(|s| fsvfm_data::load_normalized(&s.image, size, &norm))
                .collect()
        };
        let mut samples = Vec::new();
        let mut pixels: Vec<f32> = Vec::new();
        for (s, d) in all.into_iter().zip(decoded) {
            match d {
                Ok(x) => {
                    pixels.extend(x);
                    samples.push(s);
                }
                Err(reason) => skipped.push(fsvfm_data::Skipped {
                    path: s.image.display().to_string(),
                    reason,
                }),
            }
        }
        let scores = clf.p_fake(&pixels, a.batch_size)?;
        eprintln!(
            "{name}: {} images scored, {} left out",
            samples.len(),
            skipped.len()
        );
        results.push(Scored {
            name,
            samples,
            scores,
            skipped,
        });
    }
    crate::report::write_eval_report(
        &a.output,
        &a.checkpoint,
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

//! `fsvfm fas`: cross-domain face anti-spoofing fine-tuning (spec §6.3) — leave-one-domain-out
//! over several domains (MCIO-style: train on the others, test on the one left out), several
//! seeds, HTER / AUC / TPR@FPR=1 % at the best-HTER evaluation, mean ± std.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use fsvfm_model::{FasClassifier, FasNorm, LoadMode, VisionTransformer, WeightFile};
use fsvfm_train::batches::Augmentation;
use fsvfm_train::fas::{FasOptions, train_fas};
use fsvfm_train::transfer_recipe::size_class;

use crate::eval::encoder_of;
use crate::protocol::mean_sd;

/// Arguments of `fsvfm fas`.
#[derive(Args, Debug)]
pub struct FasArgs {
    /// Encoder: a pre-training checkpoint (ours or an official `.pth`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Architecture (preset or JSON); default: the checkpoint's `fsvfm.json`, else (official `.pth`) its
    /// tensor shapes with the heads of the matching preset.
    #[arg(long)]
    pub model: Option<String>,
    /// A domain, `NAME=PATH`: one of its FSFM/FLIP split files (`txt/casia_fake_train.txt`: the
    /// train pair feeds the sources, the test pair the target), an ImageFolder (real*/, fake*/ =
    /// attacks) or a JSONL manifest. Repeat for every domain.
    #[arg(long = "domain", required = true, num_args = 1)]
    pub domains: Vec<String>,
    /// A source used in every run but never a target (the protocol's CelebA-Spoof), `NAME=PATH`.
    #[arg(long = "extra-source", num_args = 1)]
    pub extra_sources: Vec<String>,
    /// The target domain; default: every domain in turn (leave-one-out).
    #[arg(long)]
    pub target: Option<String>,
    /// Output folder: results.md, results.json, `<target>/seed-<k>/` runs.
    #[arg(long)]
    pub output: PathBuf,
    /// Training iterations per run.
    #[arg(long, default_value_t = 4000)]
    pub iterations: usize,
    /// Evaluate on the target every this many iterations.
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Real and attack images per source domain per batch.
    #[arg(long, default_value_t = 12)]
    pub per_class: usize,
    /// Adam learning rate (default: 2.5e-5 for ViT-S/B, 1e-5 for ViT-L, the FS-VFM scripts).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam L2 weight decay (default: 1e-6 for ViT-S/B, 1e-5 for ViT-L).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Seeds, one run each (the papers: 5 for fine-tuning).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    pub seeds: Vec<u64>,
    /// Reproduce the official embedder norm over the token axis (see `fsvfm_model::fas`).
    #[arg(long)]
    pub token_axis_norm: bool,
    /// Training transform: `fas` (official: HSV saturation jitter, flip) or `none`.
    #[arg(long, default_value = "fas")]
    pub augment: String,
    /// Folder the split files' frame paths are relative to (default: `frame/` beside `txt/`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Normalisation (`vggface2` or a file); default: the pre-training run's.
    #[arg(long)]
    pub mean_std: Option<String>,
}

fn named(spec: &str) -> Result<(String, PathBuf)> {
    let (n, p) = spec
        .split_once('=')
        .with_context(|| format!("{spec:?}: expected NAME=PATH"))?;
    ensure!(!n.is_empty(), "{spec:?}: empty name");
    Ok((n.to_string(), PathBuf::from(p)))
}

/// Runs `fsvfm fas`.
pub fn fas_cmd(a: FasArgs) -> Result<()> {
    ensure!(
        a.iterations > 0 && a.per_class > 0,
        "--iterations and --per-class must be positive"
    );
    ensure!(!a.seeds.is_empty(), "--seeds must not be empty");
    let domains: Vec<(String, PathBuf)> =
        a.domains.iter().map(|d| named(d)).collect::<Result<_>>()?;
    let extras: Vec<(String, PathBuf)> = a
        .extra_sources
        .iter()
        .map(|d| named(d))
        .collect::<Result<_>>()?;
    let targets: Vec<String> = match &a.target {
        Some(t) => {
            ensure!(
                domains.iter().any(|(n, _)| n == t),
                "--target {t} is not one of the --domain names"
            );
            vec![t.clone()]
        }
        None => domains.iter().map(|(n, _)| n.clone()).collect(),
    };
    ensure!(
        domains.len() + extras.len() >= 2,
        "give at least two domains (sources and a target)"
    );
    let augment = match a.augment.as_str() {
        "fas" => Augmentation::fas(),
        "none" => Augmentation::none(0.0),
        other => bail!("--augment {other}: use fas or none"),
    };
    let (mut vit_cfg, mean_std, src) =
        encoder_of(&a.checkpoint, a.model.as_deref(), a.mean_std.as_deref())?;
    vit_cfg.num_classes = 0;
    vit_cfg.global_pool = true;
    vit_cfg.drop_path_rate = 0.0;
    vit_cfg.validate()?;
    let large = size_class(vit_cfg.embed_dim) == 'L';
    let lr = a.lr.unwrap_or(if large { 1e-5 } else { 2.5e-5 });
    let wd = a.weight_decay.unwrap_or(if large { 1e-5 } else { 1e-6 });
    let read = |p: &PathBuf, split: &str| -> Result<Vec<fsvfm_data::EvalSample>> {
        let p = fsvfm_data::eval_set::with_split(p, split);
        let (set, skipped) =
            fsvfm_data::read_eval_set(&p, split, a.root.as_deref()).map_err(anyhow::Error::msg)?;
        for k in &skipped {
            eprintln!("left out {}: {}", k.path, k.reason);
        }
        Ok(set)
    };
    // Opened once (its header); every run loads the weights into a fresh model.
    let wf = WeightFile::open(&a.checkpoint)?;
    let norm = if a.token_axis_norm {
        FasNorm::TokenAxis
    } else {
        FasNorm::PerSample
    };
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    eprintln!("normalisation: {src}; Adam lr {lr}, L2 {wd}; embedder norm {norm:?}");
    let mut md = format!(
        "# Cross-domain face anti-spoofing\n\nEncoder `{}`; {} iterations, batch {} real + {} attack per source, Adam lr {lr} (L2 {wd}); \
         embedder norm {norm:?}; seeds {:?}. Each run reports its evaluation with the lowest target HTER (the \
         few_shot_fas / FSFM protocol: selected on the target test set). Mean ± std over seeds, in %.\n\n\
         | target | sources | HTER ↓ | AUC ↑ | TPR@FPR=1% ↑ |\n|---|---|---|---|---|\n",
        a.checkpoint.display(),
        a.iterations,
        a.per_class,
        a.per_class,
        a.seeds
    );
    let mut json = serde_json::Map::new();
    for target in &targets {
        let mut sources = Vec::new();
        for (n, p) in domains.iter().filter(|(n, _)| n != target).chain(&extras) {
            sources.push((n.clone(), read(p, "train")?));
        }
        let tpath = &domains
            .iter()
            .find(|(n, _)| n == target)
            .expect("checked")
            .1;
        let target_set = read(tpath, "test")?;
        let source_names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        let mut runs = Vec::new();
        for &seed in &a.seeds {
            eprintln!("== target {target}, sources {source_names:?}, seed {seed} ==");
            let device = crate::runtime::device();
            device.seed(seed);
            let (vit, report) =
                wf.load_into(VisionTransformer::new(&vit_cfg, &device), LoadMode::Partial)?;
            let missing: Vec<_> = report
                .missing
                .iter()
                .filter(|k| !k.starts_with("fc_norm."))
                .collect();
            ensure!(
                missing.is_empty(),
                "{} lacks encoder weights {missing:?}",
                a.checkpoint.display()
            );
            let model = FasClassifier::new(vit, norm, &device);
            let settings = fsvfm_train::AdamWSettings {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
            };
            let out = a.output.join(target).join(format!("seed-{seed}"));
            let opts = FasOptions {
                sources: sources.clone(),
                target: target_set.clone(),
                output: out.clone(),
                img_size: vit_cfg.img_size,
                model: vit_cfg.clone(),
                mean_std,
                iterations: a.iterations,
                eval_every: a.eval_every,
                per_class: a.per_class,
                lr,
                augment: augment.clone(),
                seed,
                device,
            };
            let summary = train_fas(model, fsvfm_train::AdamW::adam(settings), &opts, |e| {
                eprintln!(
                    "iter {:>5}: loss {:.4} | HTER {:.2} AUC {:.2} TPR@1% {:.2} | {:.0}s",
                    e.iteration,
                    e.train_loss,
                    100.0 * e.hter,
                    100.0 * e.auc,
                    100.0 * e.tpr_at_fpr_1pct,
                    e.seconds
                )
            })?;
            runs.push(summary.best);
        }
        let col = |f: fn(&fsvfm_train::fas::FasEval) -> f64| {
            let (m, s) = mean_sd(&runs.iter().map(f).collect::<Vec<_>>());
            format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
        };
        let _ = writeln!(
            md,
            "| {target} | {} | {} | {} | {} |",
            source_names.join(", "),
            col(|e| e.hter),
            col(|e| e.auc),
            col(|e| e.tpr_at_fpr_1pct)
        );
        json.insert(target.clone(), serde_json::to_value(&runs)?);
    }
    std::fs::write(a.output.join("results.md"), &md)?;
    std::fs::write(
        a.output.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("{md}");
    Ok(())
}

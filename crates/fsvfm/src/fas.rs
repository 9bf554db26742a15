//! Cross-domain face anti-spoofing as a library call (spec §6.3): leave-one-domain-out over
//! several domains (MCIO style: train on the others, test on the one left out), several seeds,
//! HTER / AUC / TPR@FPR=1 % at each run's best-HTER evaluation, mean ± std. `fsvfm fas` parses
//! its flags into a [`FasProtocol`] and calls [`run_fas_protocol`].

use std::fmt::Write as _;
use std::path::PathBuf;

use burn::tensor::Device;
use fsvfm_data::{EvalSample, MeanStd};
use fsvfm_model::{FasClassifier, FasNorm, VitConfig};
use fsvfm_train::batches::Augmentation;
use fsvfm_train::fas::{FasEval, FasOptions, train_fas};
use fsvfm_train::transfer_recipe::size_class;

use crate::{Error, Result};

/// The training transform of a FAS run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FasAugment {
    /// The official one: HSV saturation jitter, flip.
    #[default]
    Fas,
    /// Resize only.
    None,
}

/// A leave-one-domain-out protocol.
#[derive(Debug, Clone)]
pub struct FasProtocol {
    /// The encoder: a pre-training checkpoint (ours or an official `.pth`).
    pub checkpoint: PathBuf,
    /// Its architecture (default: its sidecar, else its tensor shapes).
    pub model: Option<VitConfig>,
    /// Its normalisation (default: its sidecar).
    pub mean_std: Option<MeanStd>,
    /// The domains, `(name, path)`: an FSFM/FLIP split file (its train pair feeds the sources,
    /// its test pair the target), an ImageFolder or a JSONL manifest.
    pub domains: Vec<(String, PathBuf)>,
    /// Sources used in every run but never a target (the protocol's CelebA-Spoof).
    pub extra_sources: Vec<(String, PathBuf)>,
    /// The target domain; `None`: every domain in turn.
    pub target: Option<String>,
    /// Output folder: `results.md`, `results.json`, `<target>/seed-<k>/` runs.
    pub output: PathBuf,
    /// Training iterations per run (official: 4000).
    pub iterations: usize,
    /// Evaluate on the target every this many iterations (official: 100).
    pub eval_every: usize,
    /// Real and attack images per source domain per batch (official: 12).
    pub per_class: usize,
    /// Adam learning rate (default: 2.5e-5 for ViT-S/B, 1e-5 for ViT-L, the FS-VFM scripts).
    pub lr: Option<f64>,
    /// Adam L2 weight decay (default: 1e-6 for ViT-S/B, 1e-5 for ViT-L).
    pub weight_decay: Option<f64>,
    /// Seeds, one run each.
    pub seeds: Vec<u64>,
    /// The official embedder norm over the token axis (see `fsvfm_model::fas`).
    pub token_axis_norm: bool,
    /// Training transform.
    pub augment: FasAugment,
    /// Folder the split files' frame paths are relative to (default: `frame/` beside `txt/`).
    pub root: Option<PathBuf>,
    /// Compute device (default: the CPU).
    pub device: Option<Device>,
}

/// Something a FAS protocol reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum FasEvent<'a> {
    /// A line about the set-up or the next run.
    Message(&'a str),
    /// An image left out, and why.
    LeftOut {
        /// The image or list line.
        path: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// One evaluation of the running run on its target.
    Eval(&'a FasEval),
}

/// Receives a protocol's [`FasEvent`]s.
pub trait FasObserver {
    /// One event.
    fn event(&mut self, event: FasEvent<'_>);
}

/// What a protocol produced (also written to `results.md` and `results.json`).
#[derive(Debug, Clone)]
pub struct FasResults {
    /// The papers' table: per target, its sources and HTER / AUC / TPR@FPR=1 % mean ± std in %.
    pub markdown: String,
    /// Per target, each seed's best evaluation.
    pub runs: Vec<(String, Vec<FasEval>)>,
}

/// Mean and sample standard deviation (0 for one value), as the papers' ± columns.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

/// Runs the protocol: for each target, one run per seed trained on the other domains (and the
/// extra sources), evaluated on the target every `eval_every` iterations; writes each run's
/// checkpoint and sidecar under `output/<target>/seed-<k>/`, and the table.
pub fn run_fas_protocol(p: &FasProtocol, observer: &mut dyn FasObserver) -> Result<FasResults> {
    let invalid = |m: String| Err(Error::Invalid(m));
    if p.iterations == 0 || p.per_class == 0 {
        return invalid("--iterations and --per-class must be positive".into());
    }
    if p.seeds.is_empty() {
        return invalid("--seeds must not be empty".into());
    }
    let targets: Vec<String> = match &p.target {
        Some(t) if !p.domains.iter().any(|(n, _)| n == t) => {
            return invalid(format!("--target {t} is not one of the --domain names"));
        }
        Some(t) => vec![t.clone()],
        None => p.domains.iter().map(|(n, _)| n.clone()).collect(),
    };
    if p.domains.len() + p.extra_sources.len() < 2 {
        return invalid("give at least two domains (sources and a target)".into());
    }
    let augment = match p.augment {
        FasAugment::Fas => Augmentation::fas(),
        FasAugment::None => Augmentation::none(0.0),
    };
    // Opened once (its header); every run loads the weights into a fresh model.
    let wf = crate::checkpoint::open_model(&p.checkpoint)?;
    let described = crate::describe(&wf, p.model.as_ref(), p.mean_std)?;
    let mean_std = described.require_mean_std(&p.checkpoint)?;
    let mut vit_cfg = described.model.clone();
    vit_cfg.num_classes = 0;
    vit_cfg.global_pool = true;
    vit_cfg.drop_path_rate = 0.0;
    vit_cfg.validate()?;
    let large = size_class(vit_cfg.embed_dim) == 'L';
    let lr = p.lr.unwrap_or(if large { 1e-5 } else { 2.5e-5 });
    let wd = p.weight_decay.unwrap_or(if large { 1e-5 } else { 1e-6 });
    let mut read =
        |path: &PathBuf, split: &str| -> Result<Vec<EvalSample>> {
            let path = fsvfm_data::eval_set::with_split(path, split);
            let (set, skipped) = fsvfm_data::read_eval_set(&path, split, p.root.as_deref())
                .map_err(|reason| Error::Input {
                    path: path.clone(),
                    reason,
                })?;
            for k in &skipped {
                observer.event(FasEvent::LeftOut {
                    path: &k.path,
                    reason: &k.reason,
                });
            }
            Ok(set)
        };
    let norm = if p.token_axis_norm {
        FasNorm::TokenAxis
    } else {
        FasNorm::PerSample
    };
    std::fs::create_dir_all(&p.output).map_err(|e| Error::Input {
        path: p.output.clone(),
        reason: format!("cannot create the output folder: {e}"),
    })?;
    let mut md = format!(
        "# Cross-domain face anti-spoofing\n\nEncoder `{}`; {} iterations, batch {} real + {} attack per source, Adam lr {lr} (L2 {wd}); \
         embedder norm {norm:?}; seeds {:?}. Each run reports its evaluation with the lowest target HTER (the \
         few_shot_fas / FSFM protocol: selected on the target test set). Mean ± std over seeds, in %.\n\n\
         | target | sources | HTER ↓ | AUC ↑ | TPR@FPR=1% ↑ |\n|---|---|---|---|---|\n",
        p.checkpoint.display(),
        p.iterations,
        p.per_class,
        p.per_class,
        p.seeds
    );
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for target in &targets {
        let mut sources = Vec::new();
        for (n, path) in p
            .domains
            .iter()
            .filter(|(n, _)| n != target)
            .chain(&p.extra_sources)
        {
            sources.push((n.clone(), read(path, "train")?));
        }
        let tpath = &p
            .domains
            .iter()
            .find(|(n, _)| n == target)
            .expect("checked")
            .1;
        let target_set = read(tpath, "test")?;
        pending.push((target.clone(), sources, target_set));
    }
    observer.event(FasEvent::Message(&format!(
        "normalisation from {}; Adam lr {lr}, L2 {wd}; embedder norm {norm:?}",
        described.source_text()
    )));
    for (target, sources, target_set) in pending {
        let source_names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        let mut runs = Vec::new();
        for &seed in &p.seeds {
            observer.event(FasEvent::Message(&format!(
                "== target {target}, sources {source_names:?}, seed {seed} =="
            )));
            let device = p.device.clone().unwrap_or_else(fsvfm_model::cpu_device);
            device.seed(seed);
            let (vit, _) = crate::checkpoint::load_encoder(&wf, &vit_cfg, &device)?;
            let model = FasClassifier::new(vit, norm, &device);
            let settings = fsvfm_train::AdamWSettings {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
            };
            let opts = FasOptions {
                sources: sources.clone(),
                target: target_set.clone(),
                output: p.output.join(&target).join(format!("seed-{seed}")),
                img_size: vit_cfg.img_size,
                model: vit_cfg.clone(),
                mean_std,
                iterations: p.iterations,
                eval_every: p.eval_every,
                per_class: p.per_class,
                lr,
                augment: augment.clone(),
                seed,
                device,
            };
            let summary = train_fas(model, fsvfm_train::AdamW::adam(settings), &opts, |e| {
                observer.event(FasEvent::Eval(e))
            })?;
            runs.push(summary.best);
        }
        let col = |f: fn(&FasEval) -> f64| {
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
        results.push((target, runs));
    }
    let json: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|(t, runs)| (t.clone(), serde_json::to_value(runs).unwrap_or_default()))
        .collect();
    let write = |name: &str, bytes: &[u8]| {
        let path = p.output.join(name);
        fsvfm_data::write_atomic(&path, bytes, false).map_err(|e| Error::Input {
            path,
            reason: e.to_string(),
        })
    };
    write("results.md", md.as_bytes())?;
    write(
        "results.json",
        serde_json::to_string_pretty(&json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(FasResults {
        markdown: md,
        runs: results,
    })
}

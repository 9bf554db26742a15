//! `fsvfm fas`: cross-domain face anti-spoofing fine-tuning (spec §6.3) — leave-one-domain-out
//! over several domains (MCIO-style: train on the others, test on the one left out), several
//! seeds, HTER / AUC / TPR@FPR=1 % at the best-HTER evaluation, mean ± std.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use fsvfm::fas::{FasAugment, FasEvent, FasProtocol};

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
    #[arg(value_parser = crate::flags::ITERATIONS, long, default_value_t = 4000)]
    pub iterations: usize,
    /// Evaluate on the target every this many iterations.
    #[arg(value_parser = crate::flags::ITERATIONS, long, default_value_t = 100)]
    pub eval_every: usize,
    /// Real and attack images per source domain per batch.
    #[arg(value_parser = crate::flags::count::<1, 100_000>, long, default_value_t = 12)]
    pub per_class: usize,
    /// Adam learning rate (default: 2.5e-5 for ViT-S/B, 1e-5 for ViT-L, the FS-VFM scripts).
    #[arg(value_parser = crate::flags::learning_rate, long)]
    pub lr: Option<f64>,
    /// Adam L2 weight decay (default: 1e-6 for ViT-S/B, 1e-5 for ViT-L).
    #[arg(value_parser = crate::flags::non_negative, long)]
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

/// Prints a protocol's events on stderr.
struct Printer;

impl fsvfm::fas::FasObserver for Printer {
    fn event(&mut self, event: FasEvent<'_>) {
        match event {
            FasEvent::Message(m) => eprintln!("{m}"),
            FasEvent::LeftOut { path, reason } => eprintln!("left out {path}: {reason}"),
            FasEvent::Eval(e) => eprintln!(
                "iter {:>5}: loss {:.4} | HTER {:.2} AUC {:.2} TPR@1% {:.2} | {:.0}s",
                e.iteration,
                e.train_loss,
                100.0 * e.hter,
                100.0 * e.auc,
                100.0 * e.tpr_at_fpr_1pct,
                e.seconds
            ),
            _ => {}
        }
    }
}

/// Runs `fsvfm fas`.
pub fn fas_cmd(a: FasArgs) -> Result<()> {
    let named = |specs: &[String]| -> Result<Vec<(String, PathBuf)>> {
        specs.iter().map(|d| named(d)).collect()
    };
    let (model, mean_std) =
        crate::eval::model_and_mean_std(a.model.as_deref(), a.mean_std.as_deref())?;
    let protocol = FasProtocol {
        checkpoint: a.checkpoint.clone(),
        model,
        mean_std,
        domains: named(&a.domains)?,
        extra_sources: named(&a.extra_sources)?,
        target: a.target.clone(),
        output: a.output.clone(),
        iterations: a.iterations,
        eval_every: a.eval_every,
        per_class: a.per_class,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seeds: a.seeds.clone(),
        token_axis_norm: a.token_axis_norm,
        augment: match a.augment.as_str() {
            "fas" => FasAugment::Fas,
            "none" => FasAugment::None,
            other => bail!("--augment {other}: use fas or none"),
        },
        root: a.root.clone(),
        device: Some(crate::runtime::device()),
    };
    let results = fsvfm::fas::run_fas_protocol(&protocol, &mut Printer)?;
    println!("{}", results.markdown);
    Ok(())
}

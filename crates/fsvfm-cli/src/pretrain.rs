//! `fsvfm pretrain`, `fsvfm pretrain-loss`, `fsvfm synthetic-faces`: self-supervised pre-training,
//! its verification entry point, and demo data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use fsvfm_data::npy;
use fsvfm_model::loss::pretrain_losses;
use fsvfm_model::{FsfmPretrain, LoadMode, PatchMask, PretrainConfig, TargetNetwork, WeightFile};
use fsvfm_train::{
    EpochLog, IterLog, Observer, PretrainOptions, PretrainRecipe, RECIPES, Resume, pretrain,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `fsvfm pretrain`.
#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Recipe: a preset (tiny, fsfm_vit_base, fsvfm_vit_small, fsvfm_vit_base, fsvfm_vit_large) or a
    /// TOML file (`base = "tiny"` plus overrides).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Training faces: a folder with images/ and parsing_maps/ (the official layout, as written by
    /// `fsvfm prepare` or `fsvfm synthetic-faces`), or a JSONL manifest.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (checkpoints, logs, mean/std).
    #[arg(long)]
    pub output: PathBuf,
    /// Continue from the latest checkpoint in the output folder.
    #[arg(long, conflicts_with = "resume_from")]
    pub resume: bool,
    /// Continue from this checkpoint folder.
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// Override the recipe's epochs.
    #[arg(value_parser = crate::flags::EPOCHS, long)]
    pub epochs: Option<usize>,
    /// Override the recipe's batch size (images per micro-step and device, as the official `--batch_size` per GPU).
    #[arg(value_parser = crate::flags::TRAIN_BATCH, long)]
    pub batch_size: Option<usize>,
    /// Override the recipe's gradient accumulation.
    #[arg(value_parser = crate::flags::count::<1, 65_536>, long)]
    pub accum_iter: Option<usize>,
    /// Override the learning rate (absolute).
    #[arg(value_parser = crate::flags::learning_rate, long)]
    pub lr: Option<f64>,
    /// Override the seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use known normalisation instead of computing it: `vggface2` or a `pretrain_ds_mean_std.txt`.
    #[arg(long)]
    pub mean_std: Option<String>,
    /// No progress bar (log lines per epoch only).
    #[arg(long)]
    pub quiet: bool,
    /// Write the freshly initialised networks as `checkpoint-init/` (with the data's mean/std) and
    /// stop: the random-initialisation baseline of an ablation.
    #[arg(long, conflicts_with_all = ["resume", "resume_from"])]
    pub init_only: bool,
}

struct Progress {
    bar: Option<ProgressBar>,
}

impl Observer for Progress {
    fn message(&mut self, msg: &str) {
        match &self.bar {
            // A bar that does not draw (stderr is not a terminal: a log file, a launcher)
            // would swallow the line.
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => eprintln!("{msg}"),
        }
    }

    fn start(&mut self, start_epoch: usize, epochs: usize, steps: usize) {
        if let Some(b) = &self.bar {
            b.set_length(((epochs - start_epoch.min(epochs)) * steps) as u64);
        }
    }

    fn iteration(&mut self, l: &IterLog) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "ep {} | loss {:.4} (rec {:.4} fr {:.4} sim {:+.4}) | lr {:.2e} m {:.5} | {:.1} img/s",
                l.epoch,
                l.loss.total,
                l.loss.rec_masked,
                l.loss.rec_region,
                l.loss.sim,
                l.lr,
                l.momentum,
                l.images_per_s
            ));
            b.inc(1);
        }
    }

    fn epoch(&mut self, l: &EpochLog) {
        let mut line = format!(
            "epoch {:>4}: loss {:.5} (rec {:.5} fr {:.5} sim {:+.5}) {:.1}s",
            l.epoch, l.loss.total, l.loss.rec_masked, l.loss.rec_region, l.loss.sim, l.seconds
        );
        if l.skipped > 0 {
            line.push_str(&format!(", {} non-finite batches skipped", l.skipped));
        }
        if let Some(c) = &l.checkpoint {
            line.push_str(&format!(", saved {}", c.display()));
        }
        self.message(&line);
    }
}

/// Runs `fsvfm pretrain`.
pub fn pretrain_cmd(a: PretrainArgs) -> Result<()> {
    let resuming = a.resume || a.resume_from.is_some();
    if resuming {
        let changed = [
            ("--batch-size", a.batch_size.is_some()),
            ("--accum-iter", a.accum_iter.is_some()),
            ("--lr", a.lr.is_some()),
            ("--seed", a.seed.is_some()),
            ("--mean-std", a.mean_std.is_some()),
        ];
        if let Some((flag, _)) = changed.iter().find(|(_, set)| *set) {
            bail!(
                "{flag} cannot change on resume: the run continues with the recipe saved in its checkpoint (only --epochs may change)"
            );
        }
    }
    let mut recipe = PretrainRecipe::load(&a.config)?;
    if let Some(v) = a.epochs {
        recipe.epochs = v;
    }
    if let Some(v) = a.batch_size {
        recipe.batch_size = v;
    }
    if let Some(v) = a.accum_iter {
        recipe.accum_iter = v;
    }
    if a.lr.is_some() {
        recipe.lr = a.lr;
    }
    if let Some(v) = a.seed {
        recipe.seed = v;
    }
    let resume = match (a.resume, a.resume_from) {
        (_, Some(p)) => Resume::From(p),
        (true, None) => Resume::Latest,
        (false, None) => Resume::No,
    };
    let opts = PretrainOptions {
        data: a.data,
        output: a.output.clone(),
        recipe,
        devices: crate::runtime::devices(),
        resume,
        mean_std: a
            .mean_std
            .as_deref()
            .map(|s| fsvfm::mean_std_named(s).map_err(anyhow::Error::from))
            .transpose()?,
        stop_after: None,
        resume_epochs: if resuming { a.epochs } else { None },
        init_only: a.init_only,
        // torchrun-style environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
        group: fsvfm_train::process_group::GroupConfig::from_env()?,
    };
    let rank = opts.group.as_ref().map_or(0, |g| g.rank);
    // One progress bar per run, not per process: the other ranks print only messages.
    let bar = (!a.quiet && rank == 0).then(|| progress_bar(0));
    let mut progress = Progress { bar };
    let summary = pretrain(&opts, &mut progress)
        .with_context(|| format!("pre-training into {}", a.output.display()))?;
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    if summary.nonfinite_batches > 0 {
        eprintln!(
            "{} batches had a non-finite loss and were skipped",
            summary.nonfinite_batches
        );
    }
    match summary.last_checkpoint {
        Some(p) => println!(
            "done: {} (encoder for fine-tuning: {})",
            p.display(),
            p.join("online.safetensors").display()
        ),
        None if rank > 0 => println!("done: rank {rank} (rank 0 writes the checkpoints)"),
        None => println!("done: nothing left to train (all epochs already ran)"),
    }
    Ok(())
}

/// Arguments of `fsvfm pretrain-loss`.
#[derive(Args, Debug)]
pub struct PretrainLossArgs {
    /// Online network weights (official `.pth` or safetensors, e.g. `checkpoint-N/online.safetensors`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Target network weights (`checkpoint-te-N.pth` or `checkpoint-N/target.safetensors`).
    #[arg(long)]
    pub target: PathBuf,
    /// Images, float32 `[N, 3, H, W]`, normalised.
    #[arg(long)]
    pub images: PathBuf,
    /// Patch mask `[N, L]` (1 = masked), float or integer `.npy`.
    #[arg(long)]
    pub mask: PathBuf,
    /// Fully covered region mask `[N, L]` (1 = in the region), float or integer `.npy`.
    #[arg(long)]
    pub region_mask: PathBuf,
    /// Architecture: a preset (`vit_base_patch16`, ...) or a JSON `PretrainConfig`; default: the
    /// recipe saved next to the checkpoint (our checkpoint folders), else `vit_base_patch16`.
    #[arg(long)]
    pub model: Option<String>,
}

/// The command-line progress bar: elapsed time, bar, position/length, message.
pub fn progress_bar(len: u64) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

fn read_bits(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = fsvfm_data::input::read(path, fsvfm_data::input::Kind::Array)
        .with_context(|| format!("reading {}", path.display()))?;
    if let Ok(a) = npy::parse_f32(&bytes) {
        return Ok((a.shape, a.data.iter().map(|&v| (v != 0.0) as u8).collect()));
    }
    let a = npy::parse_int(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((a.shape, a.values.iter().map(|&v| (v != 0) as u8).collect()))
}

fn pretrain_config(model: Option<&str>, checkpoint: &Path) -> Result<PretrainConfig> {
    if let Some(m) = model {
        if let Some(c) = PretrainConfig::preset(m) {
            return Ok(c);
        }
        let text = fsvfm_data::input::read_to_string(m)
            .with_context(|| format!("'{m}' is neither a preset nor a readable JSON file"))?;
        return PretrainConfig::from_json(&text).with_context(|| format!("parsing {m}"));
    }
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    let found = match fsvfm_train::sidecar::Sidecar::read_in(dir)? {
        Some(s) => s.pretrain_model,
        None => fsvfm_train::sidecar::Legacy::read(dir)?.pretrain_model,
    };
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: the pre-training architecture is not known (no fsvfm.json of a pre-training checkpoint beside it, nor the previous release's state.json): pass --model PRESET|FILE.json",
            checkpoint.display()
        )
    })
}

/// Runs `fsvfm pretrain-loss`: the four loss terms of one batch as JSON.
pub fn pretrain_loss(a: PretrainLossArgs) -> Result<()> {
    let cfg = pretrain_config(a.model.as_deref(), &a.checkpoint)?;
    cfg.validate()?;
    let device = crate::runtime::device();
    let (online, _) = WeightFile::open(&a.checkpoint)?
        .load_into(FsfmPretrain::new(&cfg, &device), LoadMode::Strict)?;
    let (target, _) = WeightFile::open(&a.target)?
        .load_into(TargetNetwork::new(&cfg, &device), LoadMode::Strict)?;
    let x = npy::read_f32(&a.images).with_context(|| format!("reading {}", a.images.display()))?;
    ensure!(
        x.shape.len() == 4,
        "images must be [N, 3, H, W], got {:?}",
        x.shape
    );
    let (n, l) = (x.shape[0], cfg.encoder.num_patches());
    let (ms, mask) = read_bits(&a.mask)?;
    let (rs, region) = read_bits(&a.region_mask)?;
    for (what, s) in [("mask", &ms), ("region mask", &rs)] {
        if s.iter().product::<usize>() != n * l {
            bail!("{what} has shape {s:?}, the batch needs [N, L] = [{n}, {l}]");
        }
    }
    let images = Tensor::<4>::from_data(
        TensorData::new(x.data, [n, x.shape[1], x.shape[2], x.shape[3]]),
        &device,
    );
    let out = online.forward(images.clone(), &PatchMask::new(n, l, mask.clone())?)?;
    let z = target.forward(images.clone())?;
    let as_float = |m: Vec<u8>| {
        let v: Vec<f32> = m.into_iter().map(f32::from).collect();
        Tensor::<2>::from_data(TensorData::new(v, [n, l]), &device)
    };
    let losses = pretrain_losses(
        images,
        out.pred,
        as_float(mask),
        as_float(region),
        out.p,
        z,
        cfg.encoder.patch_size,
        cfg.norm_pix_loss,
    );
    let v = |t: Tensor<1>| -> f64 { t.into_scalar::<f32>() as f64 };
    let json = serde_json::json!({
        "rec_masked": v(losses.rec_masked),
        "rec_region": v(losses.rec_region),
        "sim": v(losses.sim),
        "total": v(losses.total),
    });
    println!("{json}");
    Ok(())
}

/// Arguments of `fsvfm synthetic-faces`.
#[derive(Args, Debug)]
pub struct SyntheticFacesArgs {
    /// Output folder (gets images/ and parsing_maps/).
    #[arg(long)]
    pub output: PathBuf,
    /// Number of faces.
    #[arg(value_parser = crate::flags::count::<1, 10_000_000>, long, default_value_t = 64)]
    pub count: usize,
    /// Side in pixels.
    #[arg(value_parser = crate::flags::count::<16, 4096>, long, default_value_t = 224)]
    pub size: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write crude face swaps instead (another synthetic identity's inner face blended in): fakes
    /// for trying `adapt` and `eval` until real forgery synthesis lands.
    #[arg(long)]
    pub forgeries: bool,
}

/// Runs `fsvfm synthetic-faces`.
pub fn synthetic_faces(a: SyntheticFacesArgs) -> Result<()> {
    ensure!(
        a.count > 0 && a.size >= 16,
        "need --count ≥ 1 and --size ≥ 16"
    );
    fsvfm_train::synthetic::write_synthetic_faces(&a.output, a.count, a.size, a.seed, a.forgeries)?;
    println!(
        "wrote {} synthetic {} with region maps to {} (pre-training recipes: {})",
        a.count,
        if a.forgeries { "face swaps" } else { "faces" },
        a.output.display(),
        RECIPES.join(", ")
    );
    Ok(())
}

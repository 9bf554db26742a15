//! The pre-training loop (`fsvfm pretrain`): data set-up (sample list, mean/std, skipped inputs),
//! the iteration schedule of `engine_pretrain.py`, logging, checkpoints and resume.
//!
//! Output folder:
//! - `recipe.toml` (resolved), `samples.jsonl` (the samples used, in order), `skipped.jsonl`
//!   (every input left out and why), `pretrain_ds_mean_std.txt` (the official one-line JSON);
//! - `log.jsonl`: one line per iteration (`"kind": "iter"`) and per epoch (`"kind": "epoch"`);
//!   `loss.png` (curves, redrawn every epoch); `recon-<epoch>.png` every `recon_every` epochs
//!   (original | masked | reconstruction | covered region for the first four faces);
//! - `checkpoint-<epoch>/` every `save_every` epochs and after the last, `checkpoint-min_loss/`
//!   for the lowest epoch-mean loss (see [`crate::checkpoint`]).
//!
//! In a multi-process run ([`PretrainOptions::group`]) only rank 0 writes: the output folder (and
//! the data) must be reachable at the same paths from every process, as for the official DDP
//! run, since every rank reads the checkpoint it resumes from.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use fsvfm_data::{MeanStd, PretrainSample};
use fsvfm_masking::MaskParams;
use fsvfm_model::{FsfmPretrain, TargetNetwork};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, TrainState};
use crate::data::{Prefetcher, PretrainData, parse_region};
use crate::optim::AdamW;
use crate::parallel::{Finish, Replicas};
use crate::process_group::{GroupConfig, ProcessGroup, tags};
use crate::recipe::PretrainRecipe;
use crate::schedule::momentum_at;
use crate::step::{LossValues, PretrainTrainer};
use crate::{TrainError, io_error};

/// One iteration, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IterLog {
    /// Epoch.
    pub epoch: usize,
    /// Step within the epoch.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// Global micro-step.
    pub iteration: u64,
    /// Learning rate in effect.
    pub lr: f64,
    /// EMA momentum applied after this step.
    pub momentum: f64,
    /// Loss terms.
    pub loss: LossValues,
    /// Gradient norm before clipping, on update steps.
    pub grad_norm: Option<f64>,
    /// Whether the batch was skipped for a non-finite loss.
    pub skipped: bool,
    /// Throughput of this iteration (images/s, including waiting for data).
    pub images_per_s: f64,
}

/// One epoch, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch.
    pub epoch: usize,
    /// Mean of the finite losses of the epoch.
    pub loss: LossValues,
    /// Batches skipped in this epoch.
    pub skipped: usize,
    /// Seconds.
    pub seconds: f64,
    /// Checkpoint written after this epoch, if any.
    pub checkpoint: Option<PathBuf>,
}

/// What the caller sees while training (the CLI draws a progress bar from it).
pub trait Observer {
    /// A notice (data set-up, resume, checkpoints).
    fn message(&mut self, _msg: &str) {}
    /// Training is about to run `epochs` epochs of `steps` steps from `start_epoch`.
    fn start(&mut self, _start_epoch: usize, _epochs: usize, _steps: usize) {}
    /// After every iteration.
    fn iteration(&mut self, _log: &IterLog) {}
    /// After every epoch.
    fn epoch(&mut self, _log: &EpochLog) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// How to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Fresh run (the output folder must not hold checkpoints).
    No,
    /// Continue from the latest `checkpoint-<epoch>` in the output folder.
    Latest,
    /// Continue from this checkpoint folder.
    From(PathBuf),
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    /// Folder in the official layout or a `.jsonl` manifest.
    pub data: PathBuf,
    /// Output folder.
    pub output: PathBuf,
    /// The recipe (ignored on resume: the checkpoint's recipe is used).
    pub recipe: PretrainRecipe,
    /// Compute devices, one per data-parallel worker (plain; each online network goes on the
    /// autodiff version). Rank 0 (`devices[0]`) writes checkpoints; see [`crate::parallel`].
    pub devices: Vec<Device>,
    /// Start or continue.
    pub resume: Resume,
    /// Known normalisation instead of computing it (e.g. [`MeanStd::VGGFACE2`]).
    pub mean_std: Option<MeanStd>,
    /// Stop (without saving) after this many micro-steps in this call: simulates a killed run.
    pub stop_after: Option<u64>,
    /// On resume, change the total number of epochs (the cosine schedules stretch accordingly, so
    /// the continuation is no longer the original run's).
    pub resume_epochs: Option<usize>,
    /// Write the freshly initialised networks (and the data's mean/std) as `checkpoint-init/`
    /// and stop: the random-initialisation baseline of an ablation, loadable like any checkpoint.
    pub init_only: bool,
    /// This process's place in a multi-process run (`None`: the only process). The global
    /// batch is `batch_size × devices × processes`; process `p` loads and trains part `p` of
    /// it, and only rank 0 writes (see [`crate::process_group`]).
    pub group: Option<GroupConfig>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct PretrainSummary {
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Epoch-mean losses of the epochs run in this call.
    pub epoch_losses: Vec<f64>,
    /// Batches skipped for non-finite losses (whole run).
    pub nonfinite_batches: u64,
    /// Whether `stop_after` interrupted the run.
    pub interrupted: bool,
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), TrainError> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).unwrap_or_default());
        text.push('\n');
    }
    fsvfm_model::checkpoint::write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, TrainError> {
    let text = fsvfm_data::input::read_to_string(path).map_err(io_error(path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// The file in a run's folder naming the data it was started on (checked on resume).
const DATA_FILE: &str = "data.json";

/// The data path as recorded: absolute and with links resolved, so `./faces` and
/// `/work/faces` are one data set.
fn data_id(data: &Path) -> String {
    std::fs::canonicalize(data)
        .unwrap_or_else(|_| data.to_path_buf())
        .display()
        .to_string()
}

/// A resume reads the samples listed when the run started; a different `--data` would be
/// silently ignored, so it is refused. (Runs from before `data.json` existed are not checked.)
fn check_same_data(opts: &PretrainOptions) -> Result<(), TrainError> {
    let path = opts.output.join(DATA_FILE);
    let Ok(text) = fsvfm_data::input::read_to_string(&path) else {
        return Ok(());
    };
    let recorded: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    let (was, now) = (recorded["data"].as_str().unwrap_or(""), data_id(&opts.data));
    if was != now {
        return Err(TrainError::Config(format!(
            "--data {now} is not the data this run was started on ({was}); resume with that \
             --data, or start a new output folder"
        )));
    }
    Ok(())
}

/// Lists, validates and normalises the data of a fresh run; writes `samples.jsonl`,
/// `skipped.jsonl` and `pretrain_ds_mean_std.txt`.
fn prepare_data(
    opts: &PretrainOptions,
    recipe: &PretrainRecipe,
    obs: &mut dyn Observer,
) -> Result<(Vec<PretrainSample>, MeanStd), TrainError> {
    let (mut samples, mut skipped) = fsvfm_data::discover(&opts.data).map_err(TrainError::Data)?;
    let size = recipe.model.encoder.img_size;
    obs.message(&format!(
        "{} samples found ({} inputs left out); checking images and computing mean/std",
        samples.len(),
        skipped.len()
    ));
    let (computed, mut bad) = fsvfm_data::mean_std(&samples, size);
    // Every region map read once up front: a bad one (a label outside LaPa's 0..=10, a cut file)
    // is left out with its reason here instead of stopping the run when its batch comes up.
    {
        use rayon::prelude::*;
        let bad_maps: Vec<(usize, fsvfm_data::Skipped)> = samples
            .par_iter()
            .enumerate()
            .filter_map(|(i, s)| {
                fsvfm_masking::LabelMap::load(&s.parsing).err().map(|e| {
                    (
                        i,
                        fsvfm_data::Skipped {
                            path: s.image.display().to_string(),
                            reason: format!("region map {}: {e}", s.parsing.display()),
                        },
                    )
                })
            })
            .collect();
        bad.extend(bad_maps);
    }
    // A sample with a bad image and a bad map is skipped once, with the image's reason.
    let mut bad_idx = std::collections::HashSet::new();
    skipped.extend(
        bad.into_iter()
            .filter(|(i, _)| bad_idx.insert(*i))
            .map(|(_, s)| s),
    );
    samples = samples
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !bad_idx.contains(i))
        .map(|(_, s)| s)
        .collect();
    let mean_std = match (opts.mean_std, computed) {
        (Some(m), _) => m,
        (None, Some(m)) => m,
        (None, None) => {
            return Err(TrainError::Data(format!(
                "no usable samples in {} (see {})",
                opts.data.display(),
                opts.output.join("skipped.jsonl").display()
            )));
        }
    };
    write_jsonl(&opts.output.join("samples.jsonl"), &samples)?;
    fsvfm_model::checkpoint::write_atomic(
        &opts.output.join(DATA_FILE),
        serde_json::json!({"data": data_id(&opts.data)})
            .to_string()
            .as_bytes(),
    )?;
    write_jsonl(&opts.output.join("skipped.jsonl"), &skipped)?;
    fsvfm_model::checkpoint::write_atomic(
        &opts.output.join("pretrain_ds_mean_std.txt"),
        (mean_std.to_json_line() + "\n").as_bytes(),
    )?;
    if !skipped.is_empty() {
        obs.message(&format!(
            "{} inputs left out, listed with reasons in {}",
            skipped.len(),
            opts.output.join("skipped.jsonl").display()
        ));
    }
    Ok((samples, mean_std))
}

/// What must agree between the processes of a multi-process run, one `key = value` per line
/// (the group refuses a rank whose lines differ from rank 0's and names the first difference).
fn group_fingerprint(opts: &PretrainOptions) -> String {
    format!(
        "fsvfm = {}\ndevices per process = {}\nresume = {:?}\nresume epochs = {:?}\ndata = {}\n\
         output = {}\nmean/std = {:?}\n{}",
        env!("CARGO_PKG_VERSION"),
        opts.devices.len(),
        opts.resume,
        opts.resume_epochs,
        opts.data.display(),
        opts.output.display(),
        opts.mean_std,
        opts.recipe.to_toml()
    )
}

/// Rank 0's sample list and normalisation on every process of a fresh run (`prepared` is rank
/// 0's; only it reads every image to check them and compute the mean/std).
fn share_data(
    group: Option<&ProcessGroup>,
    prepared: Option<(Vec<PretrainSample>, MeanStd)>,
) -> Result<(Vec<PretrainSample>, MeanStd), TrainError> {
    let Some(group) = group else {
        return prepared.ok_or_else(|| TrainError::Data("no data prepared".into()));
    };
    let bytes = match &prepared {
        Some(p) => serde_json::to_vec(p).map_err(|e| TrainError::Data(e.to_string()))?,
        None => Vec::new(),
    };
    let shared = group.broadcast(tags::DATA, &bytes)?;
    serde_json::from_slice(&shared)
        .map_err(|e| TrainError::Collective(format!("the sample list from rank 0: {e}")))
}

/// A digest of the online and target parameters (names and bits), to check that every process
/// starts from the same weights (DDP broadcasts rank 0's instead).
fn weights_digest(t: &PretrainTrainer) -> Result<u64, TrainError> {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for values in [
        crate::params::param_values(&t.online),
        crate::params::param_values(&t.target),
    ] {
        for (name, v) in values {
            name.hash(&mut h);
            let data = v
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::Collective(format!("{name}: {e:?}")))?;
            for x in data {
                x.to_bits().hash(&mut h);
            }
        }
    }
    Ok(h.finish())
}

/// Fails unless every process of `group` starts from the weights `t` holds.
fn check_same_weights(group: &ProcessGroup, t: &PretrainTrainer) -> Result<(), TrainError> {
    let own = weights_digest(t)?.to_le_bytes();
    let all = group.all_gather(tags::WEIGHTS, &own)?;
    if let Some(p) = all.iter().position(|d| d[..] != own[..]) {
        return Err(TrainError::Collective(format!(
            "process {p} starts from other weights than process {}: the processes run different \
             builds, or resume from different checkpoints",
            group.rank()
        )));
    }
    Ok(())
}

/// The batch arithmetic of a run, as the official code prints it at start: the global and
/// effective batch and the learning rate they give.
fn run_summary(recipe: &PretrainRecipe, devices: usize, processes: usize, steps: usize) -> String {
    let per = if processes > 1 {
        format!("{devices} device(s) × {processes} processes")
    } else {
        format!("{devices} device(s)")
    };
    let lr = match recipe.lr {
        Some(lr) => format!("lr {lr:.3e} (set)"),
        None => format!(
            "lr {:.3e} = blr {:.3e} × {} / 256",
            recipe.peak_lr(),
            recipe.blr,
            recipe.effective_batch()
        ),
    };
    format!(
        "batch {} per device × {per} = {} per step; × accum_iter {} = effective batch {}; {lr}; \
         {} epochs × {steps} steps",
        recipe.batch_size,
        recipe.global_batch(),
        recipe.accum_iter,
        recipe.effective_batch(),
        recipe.epochs
    )
}

/// Runs (or continues) pre-training.
pub fn pretrain(
    opts: &PretrainOptions,
    obs: &mut dyn Observer,
) -> Result<PretrainSummary, TrainError> {
    // The group first: from here on, a rank that fails closes its connections and the others
    // stop at their next exchange instead of waiting.
    let group = match &opts.group {
        Some(cfg) => {
            obs.message(&format!(
                "rank {} of {}: joining the group at {}:{}",
                cfg.rank, cfg.world, cfg.master_addr, cfg.master_port
            ));
            Some(Arc::new(ProcessGroup::connect(
                cfg,
                &group_fingerprint(opts),
            )?))
        }
        None => None,
    };
    let writer = group.as_ref().is_none_or(|g| g.rank() == 0);
    let processes = group.as_ref().map_or(1, |g| g.world());
    // One writer per output folder: a second run (another seed, say) would overwrite this one's
    // checkpoints and interleave its log.
    let _lock = if writer {
        Some(
            fsvfm_data::outdir::lock_dir(&opts.output, "fsvfm pretrain")
                .map_err(|e| TrainError::Config(e.to_string()))?,
        )
    } else {
        None
    };
    let resume_from = match &opts.resume {
        Resume::No => {
            if let Some(p) = checkpoint::latest(&opts.output).filter(|_| writer) {
                return Err(TrainError::Checkpoint(format!(
                    "{} already holds {}; pass --resume to continue it, or choose another output folder",
                    opts.output.display(),
                    p.display()
                )));
            }
            None
        }
        Resume::Latest => Some(checkpoint::latest(&opts.output).ok_or_else(|| {
            TrainError::Checkpoint(format!(
                "nothing to resume: no complete checkpoint-<epoch> in {}",
                opts.output.display()
            ))
        })?),
        Resume::From(p) => Some(p.clone()),
    };
    let device = opts
        .devices
        .first()
        .cloned()
        .ok_or_else(|| TrainError::Config("no device given".into()))?;
    let world = opts.devices.len() * processes;
    let (trainer, mut state, samples) = match resume_from {
        Some(dir) => {
            let mut loaded = checkpoint::load(&dir, &device)?;
            if loaded.state.recipe.world_size != world {
                let trained = loaded.state.recipe.world_size;
                return Err(TrainError::Config(format!(
                    "{} was trained on {trained} device(s) and cannot continue on {world}: the batch \
                     per step, the learning rate and the steps per epoch depend on it (pass {trained} devices)",
                    dir.display()
                )));
            }
            if let Some(e) = opts
                .resume_epochs
                .filter(|&e| e != loaded.state.recipe.epochs)
            {
                obs.message(&format!(
                    "epochs changed from {} to {e}: the learning-rate and momentum schedules follow the new length",
                    loaded.state.recipe.epochs
                ));
                loaded.state.recipe.epochs = e;
            }
            check_same_data(opts)?;
            let samples = read_jsonl(&opts.output.join("samples.jsonl"))?;
            obs.message(&format!(
                "resuming from {} at epoch {}",
                dir.display(),
                loaded.state.next_epoch
            ));
            let r = &loaded.state.recipe;
            let trainer = PretrainTrainer::new(
                loaded.online,
                loaded.target,
                loaded.optim,
                &device,
                r.model.encoder.patch_size,
                r.model.norm_pix_loss,
            )
            .with_weights(r.loss_weights());
            (trainer, loaded.state, samples)
        }
        None => {
            let mut recipe = opts.recipe.clone();
            recipe.world_size = world;
            recipe.validate().map_err(TrainError::Config)?;
            let prepared = if writer {
                Some(prepare_data(opts, &recipe, obs)?)
            } else {
                None
            };
            let (samples, mean_std) = share_data(group.as_deref(), prepared)?;
            if writer {
                fsvfm_model::checkpoint::write_atomic(
                    &opts.output.join("recipe.toml"),
                    recipe.to_toml().as_bytes(),
                )?;
            }
            device.seed(recipe.seed);
            let ad = device.clone().autodiff();
            let online = FsfmPretrain::new(&recipe.model, &ad);
            let target = TargetNetwork::from_online(&online);
            let trainer = PretrainTrainer::new(
                online,
                target,
                AdamW::new(recipe.optimizer),
                &device,
                recipe.model.encoder.patch_size,
                recipe.model.norm_pix_loss,
            )
            .with_weights(recipe.loss_weights());
            let state = TrainState {
                next_epoch: 0,
                iteration: 0,
                nonfinite_batches: 0,
                best_loss: None,
                recipe,
                mean_std,
            };
            if opts.init_only {
                if !writer {
                    return Ok(PretrainSummary {
                        last_checkpoint: None,
                        epoch_losses: Vec::new(),
                        nonfinite_batches: 0,
                        interrupted: false,
                    });
                }
                let p = checkpoint::save(
                    &opts.output,
                    "checkpoint-init",
                    &trainer.online,
                    &trainer.target,
                    &trainer.optim,
                    &state,
                )?;
                obs.message(&format!("initial networks written to {}", p.display()));
                return Ok(PretrainSummary {
                    last_checkpoint: Some(p),
                    epoch_losses: Vec::new(),
                    nonfinite_batches: 0,
                    interrupted: false,
                });
            }
            (trainer, state, samples)
        }
    };
    let recipe = state.recipe.clone();
    let local = crate::collective::for_devices(&opts.devices)?;
    let mut replicas = match &group {
        None => Replicas::new(trainer, &opts.devices, local)?,
        Some(g) => {
            check_same_weights(g, &trainer)?;
            let collective = crate::collective::ProcessCollective::new(local, g.clone());
            Replicas::new(trainer, &opts.devices, Arc::new(collective))?.with_group(g.clone())
        }
    };
    let mut mask = MaskParams::new(recipe.strategy, recipe.mask_ratio);
    if let Some(r) = &recipe.region {
        mask = mask.with_region(parse_region(r)?);
    }
    let data = Arc::new(PretrainData::new(
        samples,
        recipe.model.encoder.img_size,
        recipe.model.encoder.patch_size,
        state.mean_std,
        mask,
        recipe.seed,
    )?);
    let steps = data.iters_per_epoch(recipe.global_batch());
    if steps == 0 {
        return Err(TrainError::Data(format!(
            "{} usable samples, fewer than one batch of {}",
            data.samples.len(),
            recipe.global_batch()
        )));
    }
    let total_iters = (recipe.epochs * steps) as u64;
    obs.message(&run_summary(&recipe, opts.devices.len(), processes, steps));
    let schedule = recipe.lr_schedule();
    let log_path = opts.output.join("log.jsonl");
    let mut log = if writer {
        // The log says what the checkpoint being continued did, no more: lines of iterations
        // and epochs after it (written before a kill) are cut, as their work is redone.
        let (iteration, next_epoch) = (state.iteration, state.next_epoch as u64);
        checkpoint::cut_log(&log_path, |line| match line["kind"].as_str() {
            Some("iter") => line["iteration"].as_u64().is_some_and(|i| i < iteration),
            Some("epoch") => line["epoch"].as_u64().is_some_and(|e| e < next_epoch),
            _ => true,
        })?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(&log_path))?;
        Some(file)
    } else {
        None
    };
    obs.start(state.next_epoch, recipe.epochs, steps);
    // This process's consecutive part of every global batch (as the in-process shards).
    let part_len = recipe.global_batch() / processes;
    let first = group.as_ref().map_or(0, |g| g.rank()) * part_len;
    let mut prefetch = Prefetcher::start(
        data.clone(),
        recipe.global_batch(),
        first..first + part_len,
        state.next_epoch as u64,
        recipe.epochs as u64,
    );
    let mut summary = PretrainSummary {
        last_checkpoint: None,
        epoch_losses: Vec::new(),
        nonfinite_batches: state.nonfinite_batches,
        interrupted: false,
    };
    let mut done_here = 0u64;
    let mut consecutive_bad = 0usize;
    let mut lr = 0.0;
    for epoch in state.next_epoch..recipe.epochs {
        let t_epoch = Instant::now();
        replicas.clear_grads()?; // the official loop zeroes gradients at the start of every epoch
        let (mut finite_losses, mut skipped) = (Vec::with_capacity(steps), 0usize);
        for step in 0..steps {
            if opts.stop_after.is_some_and(|n| done_here >= n) {
                summary.interrupted = true;
                return Ok(summary);
            }
            let t0 = Instant::now();
            let prepared = prefetch
                .next_batch()
                .ok_or_else(|| TrainError::Data("the data loader stopped early".into()))?;
            debug_assert_eq!((prepared.epoch, prepared.step), (epoch as u64, step as u64));
            let batch = prepared.batch?;
            if step % recipe.accum_iter == 0 {
                lr = schedule.at(step as f64 / steps as f64 + epoch as f64);
            }
            let loss = replicas.forward_backward(&batch, recipe.accum_iter)?;
            let finite = loss.is_finite();
            let momentum = momentum_at(recipe.t_momentum, state.iteration, total_iters);
            let update =
                (finite && (step + 1) % recipe.accum_iter == 0).then_some((lr, recipe.clip_grad));
            let grad_norm = replicas
                .finish(Finish {
                    commit: finite,
                    update,
                    momentum,
                })?
                .map(|u| u.grad_norm);
            if finite {
                consecutive_bad = 0;
                finite_losses.push(loss);
            } else {
                skipped += 1;
                consecutive_bad += 1;
                state.nonfinite_batches += 1;
                summary.nonfinite_batches = state.nonfinite_batches;
                if consecutive_bad >= recipe.max_nonfinite {
                    return Err(TrainError::Diverged(format!(
                        "{consecutive_bad} consecutive batches with a non-finite loss at epoch {epoch} step {step} \
                         (last: {loss:?}); the last checkpoint is intact: lower the learning rate and resume"
                    )));
                }
            }
            state.iteration += 1;
            done_here += 1;
            let entry = IterLog {
                epoch,
                step,
                steps,
                iteration: state.iteration - 1,
                lr,
                momentum,
                loss,
                grad_norm,
                skipped: !finite,
                images_per_s: (batch.dims[0] * processes) as f64
                    / t0.elapsed().as_secs_f64().max(1e-9),
            };
            if let Some(log) = &mut log {
                let mut line = serde_json::to_value(&entry).unwrap_or_default();
                line["kind"] = "iter".into();
                writeln!(log, "{line}").map_err(io_error(&log_path))?;
            }
            obs.iteration(&entry);
        }
        let epoch_loss = LossValues::mean(&finite_losses);
        state.next_epoch = epoch + 1;
        let improved =
            !finite_losses.is_empty() && state.best_loss.is_none_or(|b| epoch_loss.total < b);
        if improved {
            state.best_loss = Some(epoch_loss.total);
        }
        // The epoch's line goes out before its checkpoints: a kill between the two leaves a line
        // that the resume cuts (it continues from the previous checkpoint), never a checkpoint
        // without its line.
        let saves = writer && ((epoch + 1) % recipe.save_every == 0 || epoch + 1 == recipe.epochs);
        let written = saves.then(|| opts.output.join(format!("checkpoint-{epoch}")));
        let entry = EpochLog {
            epoch,
            loss: epoch_loss,
            skipped,
            seconds: t_epoch.elapsed().as_secs_f64(),
            checkpoint: written.clone(),
        };
        if let Some(log) = &mut log {
            let mut line = serde_json::to_value(&entry).unwrap_or_default();
            line["kind"] = "epoch".into();
            writeln!(log, "{line}").map_err(io_error(&log_path))?;
        }
        // Below, only rank 0 (the writer) writes; the state is the same on every rank.
        if improved && writer {
            checkpoint::save(
                &opts.output,
                "checkpoint-min_loss",
                &replicas.lead().online,
                &replicas.lead().target,
                &replicas.lead().optim,
                &state,
            )?;
        }
        if saves {
            let p = checkpoint::save(
                &opts.output,
                &format!("checkpoint-{epoch}"),
                &replicas.lead().online,
                &replicas.lead().target,
                &replicas.lead().optim,
                &state,
            )?;
            summary.last_checkpoint = Some(p);
        }
        if writer
            && recipe.recon_every > 0
            && ((epoch + 1) % recipe.recon_every == 0 || epoch + 1 == recipe.epochs)
        {
            // The same faces and masks every time, so the pictures show progress.
            let idx: Vec<usize> = (0..data.samples.len().min(4)).collect();
            let pic = opts.output.join(format!("recon-{epoch:04}.png"));
            let drawn = data
                .batch(&idx, 0, 0, &mut fsvfm_masking::Masker::new())
                .and_then(|b| {
                    crate::viz::reconstruction_picture(
                        &replicas.lead().online,
                        &b,
                        &state.mean_std,
                        recipe.model.encoder.patch_size,
                        recipe.model.norm_pix_loss,
                        &pic,
                    )
                });
            if let Err(e) = drawn {
                obs.message(&format!("could not draw {}: {e}", pic.display()));
            }
        }
        if writer && let Err(e) = crate::viz::loss_plot(&log_path, &opts.output.join("loss.png")) {
            obs.message(&format!("could not draw loss.png: {e}"));
        }
        summary.epoch_losses.push(epoch_loss.total);
        obs.epoch(&entry);
    }
    Ok(summary)
}

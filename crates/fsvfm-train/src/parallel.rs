//! Data-parallel pre-training in one process: one [`PretrainTrainer`] replica per device, rank 0
//! on the calling thread (it writes the checkpoints and pictures), ranks `1..` on their own
//! long-lived threads (a GPU keeps its stream and memory pool on one thread).
//!
//! Each micro-step the global batch is cut into one shard per rank ([`HostBatch::shards`]); every
//! rank runs forward and backward on its shard and holds the gradients back until the caller
//! knows whether all shards were finite ([`Replicas::finish`]): either every rank adds its
//! gradients or none does, so the replicas never disagree on which batches were skipped. On an
//! update step the ranks average their gradients through the [`Collective`] (as DDP does before
//! `optimizer.step()`), then each clips, applies AdamW and updates its EMA target itself: the
//! replicas apply identical updates and stay identical, as in the official DDP run.
//!
//! In a multi-process run ([`Replicas::with_group`]) the same holds across processes: the loss
//! values of every rank of every process are gathered before the commit decision, so all
//! processes decide alike, and the gradient norms are compared across processes after every
//! update.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use burn::tensor::{Device, Gradients};

use crate::TrainError;
use crate::collective::Collective;
use crate::process_group::{ProcessGroup, tags};
use crate::step::{HostBatch, LossValues, PretrainTrainer, UpdateInfo};

/// What the caller decided after a micro-step's losses were known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finish {
    /// Add the held-back gradients (every shard was finite); otherwise drop them.
    pub commit: bool,
    /// Apply the optimiser at this learning rate and clip (`Some` only on the last micro-step
    /// of an accumulation window, and only when `commit`).
    pub update: Option<(f64, Option<f64>)>,
    /// EMA momentum for the target (applied when `commit`).
    pub momentum: f64,
}

enum Job {
    Forward(HostBatch, usize),
    Finish(Finish),
    ClearGrads,
}

enum Reply {
    Loss(LossValues),
    Finished(Option<UpdateInfo>),
}

/// One rank's part of a micro-step decision: add or drop `pending`, then all-reduce, update and
/// EMA as `f` says.
fn finish_rank(
    t: &mut PretrainTrainer,
    pending: &mut Option<Gradients>,
    rank: usize,
    collective: &dyn Collective,
    f: Finish,
) -> Result<Option<UpdateInfo>, TrainError> {
    let grads = pending.take();
    if !f.commit {
        return Ok(None);
    }
    if let Some(g) = grads {
        t.add_grads(g);
    }
    let info = match f.update {
        Some((lr, clip)) => {
            collective.all_reduce_mean(rank, &mut t.grads)?;
            Some(t.update(lr, clip))
        }
        None => None,
    };
    t.ema(f.momentum);
    Ok(info)
}

/// Abandons the collective if this worker's thread unwinds (a panic in its forward, backward or
/// update), so the other workers are not left waiting for it.
struct AbandonOnPanic(Arc<dyn Collective>);

impl Drop for AbandonOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

fn serve(
    mut t: PretrainTrainer,
    rank: usize,
    collective: Arc<dyn Collective>,
    jobs: Receiver<Job>,
    replies: Sender<Result<Reply, TrainError>>,
) {
    let _guard = AbandonOnPanic(collective.clone());
    let mut pending = None;
    for job in jobs {
        let reply = match job {
            Job::Forward(batch, accum) => t.forward_backward(&batch, accum).map(|(loss, g)| {
                pending = g;
                Reply::Loss(loss)
            }),
            Job::Finish(f) => {
                finish_rank(&mut t, &mut pending, rank, &*collective, f).map(Reply::Finished)
            }
            Job::ClearGrads => {
                t.grads.clear();
                continue;
            }
        };
        if replies.send(reply).is_err() {
            break;
        }
    }
}

struct Worker {
    jobs: Sender<Job>,
    replies: Receiver<Result<Reply, TrainError>>,
    handle: Option<JoinHandle<()>>,
}

/// The replicas of one data-parallel run (world size = number of devices).
pub struct Replicas {
    lead: PretrainTrainer,
    pending: Option<Gradients>,
    collective: Arc<dyn Collective>,
    workers: Vec<Worker>,
    group: Option<Arc<ProcessGroup>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("world", &self.world())
            .finish_non_exhaustive()
    }
}

impl Replicas {
    /// Rank 0 is `lead` (already on `devices[0]`); ranks `1..` are copies of it on `devices[1..]`
    /// (same weights, target and optimiser state), each on its own thread. `collective` must
    /// have `devices.len()` ranks.
    pub fn new(
        lead: PretrainTrainer,
        devices: &[Device],
        collective: Arc<dyn Collective>,
    ) -> Result<Self, TrainError> {
        if collective.world_size() != devices.len().max(1) {
            return Err(TrainError::Config(format!(
                "a collective of {} ranks for {} devices",
                collective.world_size(),
                devices.len()
            )));
        }
        let mut workers = Vec::new();
        for (rank, device) in devices.iter().enumerate().skip(1) {
            let replica = lead.replica(device);
            let (jobs, job_rx) = channel();
            let (reply_tx, replies) = channel();
            let group = collective.clone();
            let handle = std::thread::Builder::new()
                .name(format!("fsvfm-rank-{rank}"))
                .spawn(move || serve(replica, rank, group, job_rx, reply_tx))
                .map_err(|e| TrainError::Config(format!("cannot start worker {rank}: {e}")))?;
            workers.push(Worker {
                jobs,
                replies,
                handle: Some(handle),
            });
        }
        Ok(Self {
            lead,
            pending: None,
            collective,
            workers,
            group: None,
        })
    }

    /// Makes these replicas one process's part of a multi-process run: losses and gradient
    /// norms are then exchanged with the other processes of `group` (the collective must be a
    /// [`crate::collective::ProcessCollective`] on the same group).
    pub fn with_group(mut self, group: Arc<ProcessGroup>) -> Self {
        self.group = Some(group);
        self
    }

    /// Number of ranks in this process.
    pub fn world(&self) -> usize {
        self.workers.len() + 1
    }

    /// The loss values of all ranks of all processes, in global rank order (the same on every
    /// process), from this process's.
    fn gather_losses(&self, local: Vec<LossValues>) -> Result<Vec<LossValues>, TrainError> {
        let Some(group) = &self.group else {
            return Ok(local);
        };
        let bytes: Vec<u8> = local
            .iter()
            .flat_map(|l| l.terms())
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut all = Vec::new();
        for part in group.all_gather(tags::LOSSES, &bytes)? {
            let v: Vec<f64> = part
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            all.extend(v.chunks_exact(4).map(LossValues::from_terms));
        }
        Ok(all)
    }

    /// Rank 0's trainer (all replicas hold the same parameters after every update).
    pub fn lead(&self) -> &PretrainTrainer {
        &self.lead
    }

    fn send(&self, rank: usize, job: Job) -> Result<(), TrainError> {
        self.workers[rank - 1]
            .jobs
            .send(job)
            .map_err(|_| stopped(rank))
    }

    fn receive(&self, rank: usize) -> Result<Reply, TrainError> {
        self.workers[rank - 1]
            .replies
            .recv()
            .map_err(|_| stopped(rank))?
    }

    /// Forward and backward of every rank on its shard of `batch` (`[world·b, …]`); the
    /// gradients are held back until [`Replicas::finish`]. Returns the mean of the ranks' loss
    /// terms (DDP's logged loss; not finite when any shard is not).
    pub fn forward_backward(
        &mut self,
        batch: &HostBatch,
        accum_iter: usize,
    ) -> Result<LossValues, TrainError> {
        let world = self.world();
        if world == 1 && self.group.is_none() {
            let (loss, g) = self.lead.forward_backward(batch, accum_iter)?;
            self.pending = g;
            return Ok(loss);
        }
        let mut shards = batch.shards(world)?.into_iter();
        let own = shards.next();
        for (i, shard) in shards.enumerate() {
            self.send(i + 1, Job::Forward(shard, accum_iter))?;
        }
        let (loss, g) = self
            .lead
            .forward_backward(own.as_ref().unwrap_or(batch), accum_iter)?;
        self.pending = g;
        let mut losses = vec![loss];
        for rank in 1..world {
            match self.receive(rank)? {
                Reply::Loss(l) => losses.push(l),
                Reply::Finished(_) => return Err(out_of_step(rank)),
            }
        }
        Ok(LossValues::mean(&self.gather_losses(losses)?))
    }

    /// Every rank adds or drops its held-back gradients, and on an update step averages them
    /// through the collective, clips, applies AdamW; then updates its EMA target. Returns rank
    /// 0's update (the same on every rank).
    pub fn finish(&mut self, f: Finish) -> Result<Option<UpdateInfo>, TrainError> {
        for rank in 1..self.world() {
            self.send(rank, Job::Finish(f))?;
        }
        let info = finish_rank(&mut self.lead, &mut self.pending, 0, &*self.collective, f)?;
        for rank in 1..self.world() {
            match self.receive(rank)? {
                // After the all-reduce every rank must hold the same gradients, hence the same
                // norm bit for bit: a difference means the collective failed and the replicas
                // would drift apart.
                Reply::Finished(other) => {
                    let bits = |i: Option<UpdateInfo>| i.map(|i| i.grad_norm.to_bits());
                    if bits(other) != bits(info) {
                        return Err(TrainError::Diverged(format!(
                            "data-parallel worker {rank} disagrees with rank 0 on the gradient norm ({other:?} vs {info:?})"
                        )));
                    }
                }
                Reply::Loss(_) => return Err(out_of_step(rank)),
            }
        }
        if let Some(group) = &self.group {
            let own = info.map_or(u64::MAX, |i| i.grad_norm.to_bits());
            for (p, part) in group
                .all_gather(tags::NORMS, &own.to_le_bytes())?
                .iter()
                .enumerate()
            {
                let theirs = u64::from_le_bytes(part.as_slice().try_into().unwrap_or_default());
                if theirs != own {
                    return Err(TrainError::Diverged(format!(
                        "process {p} disagrees with this one on the gradient norm ({} vs {}): \
                         the replicas are no longer identical (different builds or CPUs?)",
                        f64::from_bits(theirs),
                        f64::from_bits(own)
                    )));
                }
            }
        }
        Ok(info)
    }

    /// Drops the accumulated gradients on every rank (the official loop zeroes them at the start
    /// of every epoch).
    pub fn clear_grads(&mut self) -> Result<(), TrainError> {
        self.lead.grads.clear();
        for rank in 1..self.world() {
            self.send(rank, Job::ClearGrads)?;
        }
        Ok(())
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        // A worker may be waiting in the collective for one that stopped (or for rank 0, when
        // the run ends on an error): release it, then let it see its closed job channel.
        if !self.workers.is_empty() {
            self.collective.abandon();
        }
        for w in &mut self.workers {
            // Closing the job channel ends the worker's loop.
            let (closed, _) = channel();
            drop(std::mem::replace(&mut w.jobs, closed));
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

fn stopped(rank: usize) -> TrainError {
    TrainError::Diverged(format!(
        "data-parallel worker {rank} stopped (it panicked or its device failed)"
    ))
}

fn out_of_step(rank: usize) -> TrainError {
    TrainError::Diverged(format!("data-parallel worker {rank} answered out of step"))
}

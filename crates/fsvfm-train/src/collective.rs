//! Data parallelism: how the gradients of several workers become one update.
//!
//! Every worker holds a replica (same initial weights), computes the gradients of its shard of
//! the batch, and calls [`Collective::all_reduce_mean`] before the optimiser step, as PyTorch DDP
//! does; the replicas then apply identical updates and stay identical. As under DDP in the
//! official code, each worker's losses are normalised over its own shard, so `L_rec^fr` is a
//! per-worker ratio (equal to the whole-batch one when the shards cover equally many region
//! patches).
//!
//! [`ThreadCollective`] is the CPU implementation (workers are threads of one process). On CUDA
//! the same trait is meant to wrap burn's in-backward NCCL all-reduce; that path needs a CUDA
//! build and is not implemented yet.

use std::collections::BTreeMap;
use std::sync::{Barrier, Mutex};

use burn::tensor::Tensor;

use crate::TrainError;
use crate::optim::GradBuffer;

/// Combines the gradients of `world_size` workers.
pub trait Collective: Send + Sync {
    /// Number of workers.
    fn world_size(&self) -> usize;
    /// Replaces `grads` with the mean over all workers; every worker calls it once per update.
    fn all_reduce_mean(&self, rank: usize, grads: &mut GradBuffer) -> Result<(), TrainError>;
}

/// One worker: nothing to combine.
pub struct SingleWorker;

impl Collective for SingleWorker {
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_mean(&self, _rank: usize, _grads: &mut GradBuffer) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Workers as threads of one process: a barrier-synchronised mean, summed in rank order so every
/// worker ends with bit-identical gradients.
pub struct ThreadCollective {
    world: usize,
    slots: Mutex<Vec<Option<BTreeMap<String, Tensor<1>>>>>,
    barrier: Barrier,
}

impl ThreadCollective {
    /// A group of `world` workers (ranks `0..world`).
    pub fn new(world: usize) -> Self {
        Self {
            world,
            slots: Mutex::new(vec![None; world]),
            barrier: Barrier::new(world),
        }
    }
}

impl Collective for ThreadCollective {
    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_mean(&self, rank: usize, grads: &mut GradBuffer) -> Result<(), TrainError> {
        if rank >= self.world {
            return Err(TrainError::Config(format!(
                "rank {rank} in a group of {}",
                self.world
            )));
        }
        let poisoned = |_| TrainError::Diverged("a data-parallel worker panicked".into());
        self.slots.lock().map_err(poisoned)?[rank] = Some(grads.take());
        self.barrier.wait();
        let mean = {
            let slots = self.slots.lock().map_err(poisoned)?;
            let mut sum: BTreeMap<String, Tensor<1>> = BTreeMap::new();
            for (r, slot) in slots.iter().enumerate() {
                let part = slot
                    .as_ref()
                    .ok_or_else(|| TrainError::Diverged(format!("worker {r} sent no gradients")))?;
                for (name, g) in part {
                    let acc = match sum.remove(name) {
                        Some(s) => s + g.clone(),
                        None => g.clone(),
                    };
                    sum.insert(name.clone(), acc);
                }
            }
            sum.into_iter()
                .map(|(k, v)| (k, v.div_scalar(self.world as f64)))
                .collect()
        };
        // Everyone has read every slot before anyone clears its own.
        self.barrier.wait();
        self.slots.lock().map_err(poisoned)?[rank] = None;
        grads.set(mean);
        Ok(())
    }
}

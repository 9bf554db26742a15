//! Data parallelism: how the gradients of several workers become one update.
//!
//! Every worker holds a replica (same initial weights), computes the gradients of its shard of
//! the batch, and calls [`Collective::all_reduce_mean`] before the optimiser step, as PyTorch DDP
//! does; the replicas then apply identical updates and stay identical. As under DDP in the
//! official code, each worker's losses are normalised over its own shard, so `L_rec^fr` is a
//! per-worker ratio (equal to the whole-batch one when the shards cover equally many region
//! patches).
//!
//! [`ThreadCollective`] is the CPU implementation (workers are threads of one process).
//! [`DeviceCollective`] is the GPU one: burn 0.22's `all_reduce` (NCCL on CUDA), one call per
//! update on all gradients flattened into one buffer. [`for_devices`] picks one for a device list.
//! [`ProcessCollective`] adds a level above either: the processes of a multi-process (multi-node)
//! run, joined by a [`ProcessGroup`].

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

use burn::tensor::distributed::{
    DistributedConfig, DistributedContext, ReduceOperation, all_reduce,
};
use burn::tensor::{Device, Tensor, TensorData};

use crate::TrainError;
use crate::optim::GradBuffer;
use crate::process_group::{ProcessGroup, tags};

/// Combines the gradients of data-parallel workers.
pub trait Collective: Send + Sync {
    /// Number of workers in this process (the ranks that call [`Collective::all_reduce_mean`]).
    fn world_size(&self) -> usize;
    /// Replaces `grads` with the mean over all workers (of all processes, for
    /// [`ProcessCollective`]); every worker of this process calls it once per update with its
    /// rank in this process.
    fn all_reduce_mean(&self, rank: usize, grads: &mut GradBuffer) -> Result<(), TrainError>;
    /// A worker of this process stopped for good (its thread panicked, or the run is ending):
    /// workers waiting for it inside [`Collective::all_reduce_mean`] return an error instead of
    /// waiting forever, and so do later calls. Nothing to do for collectives that do not wait
    /// on each other in this process.
    fn abandon(&self) {}
}

/// A reusable meeting point of `n` threads that can be broken: [`Rendezvous::wait`] returns
/// once all `n` arrived, or with an error once [`Rendezvous::break_all`] was called (a
/// `std::sync::Barrier` would wait forever for a thread that died).
struct Rendezvous {
    n: usize,
    /// Arrived in this round, round number, broken.
    state: Mutex<(usize, u64, bool)>,
    cv: Condvar,
}

impl Rendezvous {
    fn new(n: usize) -> Self {
        Self {
            n,
            state: Mutex::new((0, 0, false)),
            cv: Condvar::new(),
        }
    }

    fn broken() -> TrainError {
        TrainError::Diverged(
            "a data-parallel worker stopped (it panicked or its device failed)".into(),
        )
    }

    fn wait(&self) -> Result<(), TrainError> {
        let mut st = self.state.lock().map_err(|_| Self::broken())?;
        if st.2 {
            return Err(Self::broken());
        }
        st.0 += 1;
        if st.0 == self.n {
            st.0 = 0;
            st.1 += 1;
            self.cv.notify_all();
            return Ok(());
        }
        let round = st.1;
        while st.1 == round && !st.2 {
            st = self.cv.wait(st).map_err(|_| Self::broken())?;
        }
        if st.1 == round {
            return Err(Self::broken());
        }
        Ok(())
    }

    fn break_all(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.2 = true;
        }
        self.cv.notify_all();
    }
}

/// The error for a lock that a panicking worker poisoned.
fn poisoned<T>(_: T) -> TrainError {
    TrainError::Diverged("a data-parallel worker panicked".into())
}

/// Gradients laid end to end in name order (every rank agrees on it), for collectives that
/// move one buffer per update: the names and lengths that cut the buffer back into parameters.
struct Flat {
    names: Vec<String>,
    sizes: Vec<usize>,
}

impl Flat {
    /// Takes the gradients out of `grads`: their layout and one `[numel]` tensor (`None` when
    /// there are none).
    fn take(grads: &mut GradBuffer) -> Option<(Self, Tensor<1>)> {
        let parts = grads.take();
        if parts.is_empty() {
            return None;
        }
        let layout = Self {
            names: parts.keys().cloned().collect(),
            sizes: parts.values().map(|g| g.dims()[0]).collect(),
        };
        Some((layout, Tensor::cat(parts.into_values().collect(), 0)))
    }

    /// Puts `flat` (in this layout) back into `grads`.
    fn set(self, grads: &mut GradBuffer, flat: Tensor<1>) {
        grads.set(
            self.names
                .into_iter()
                .zip(flat.split_with_sizes(self.sizes, 0))
                .collect(),
        );
    }
}

/// An error for a rank outside `0..world`.
fn check_rank(rank: usize, world: usize) -> Result<(), TrainError> {
    if rank >= world {
        return Err(TrainError::Config(format!(
            "rank {rank} in a group of {world}"
        )));
    }
    Ok(())
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
    barrier: Rendezvous,
}

impl ThreadCollective {
    /// A group of `world` workers (ranks `0..world`).
    pub fn new(world: usize) -> Self {
        Self {
            world,
            slots: Mutex::new(vec![None; world]),
            barrier: Rendezvous::new(world),
        }
    }
}

impl Collective for ThreadCollective {
    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_mean(&self, rank: usize, grads: &mut GradBuffer) -> Result<(), TrainError> {
        check_rank(rank, self.world)?;
        self.slots.lock().map_err(poisoned)?[rank] = Some(grads.take());
        self.barrier.wait()?;
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
        self.barrier.wait()?;
        self.slots.lock().map_err(poisoned)?[rank] = None;
        grads.set(mean);
        Ok(())
    }

    fn abandon(&self) {
        self.barrier.break_all();
    }
}

/// Devices of one process (CUDA GPUs) reducing through burn's backend collective
/// (`burn::tensor::distributed::all_reduce`; NCCL on CUDA). Every rank flattens its gradients
/// (in name order, so all ranks agree) into one `[numel]` tensor, all ranks reduce it with
/// `Mean` at once, and the result is cut back into parameters. The communication context lives
/// as long as this value.
///
/// burn implements collectives only for CUDA (and remote devices): on the CPU backend its
/// `DistributedContext::init` panics, so [`for_devices`] never builds this for `cpu`.
pub struct DeviceCollective {
    devices: Vec<Device>,
    _context: DistributedContext,
}

impl DeviceCollective {
    /// Starts burn's communication server for `devices` (rank `r` = `devices[r]`).
    pub fn new(devices: Vec<Device>) -> Self {
        let context = DistributedContext::init(
            devices.clone(),
            DistributedConfig {
                all_reduce_op: ReduceOperation::Mean,
            },
        );
        Self {
            devices,
            _context: context,
        }
    }
}

impl Collective for DeviceCollective {
    fn world_size(&self) -> usize {
        self.devices.len()
    }

    fn all_reduce_mean(&self, rank: usize, grads: &mut GradBuffer) -> Result<(), TrainError> {
        check_rank(rank, self.devices.len())?;
        let Some((layout, flat)) = Flat::take(grads) else {
            return Ok(());
        };
        let mean = all_reduce(flat, ReduceOperation::Mean, self.devices.clone()).resolve();
        layout.set(grads, mean);
        Ok(())
    }
}

/// The workers of this process (`local`, whose mean comes first) and the same number in every
/// other process of `group`: the mean over processes of the per-process means, which is the
/// mean over all workers since every process has as many. Local rank 0 exchanges the gradients
/// with the other processes (through the host: flattened in name order as `f32`, summed in
/// process order, divided by the number of processes), then the other local ranks copy its
/// result to their devices.
pub struct ProcessCollective {
    local: Arc<dyn Collective>,
    group: Arc<ProcessGroup>,
    result: Mutex<Option<Result<Arc<Vec<f32>>, String>>>,
    barrier: Rendezvous,
}

impl ProcessCollective {
    /// `local` combines this process's workers; `group` joins the processes.
    pub fn new(local: Arc<dyn Collective>, group: Arc<ProcessGroup>) -> Self {
        let n = local.world_size();
        Self {
            local,
            group,
            result: Mutex::new(None),
            barrier: Rendezvous::new(n),
        }
    }

    /// The mean over processes of this process's (already local-mean) `flat` gradients.
    fn across_processes(&self, mut flat: Vec<f32>) -> Result<Arc<Vec<f32>>, TrainError> {
        self.group.all_reduce_sum(tags::GRADS, &mut flat)?;
        let n = self.group.world() as f32;
        for v in &mut flat {
            *v /= n;
        }
        Ok(Arc::new(flat))
    }
}

impl Collective for ProcessCollective {
    fn world_size(&self) -> usize {
        self.local.world_size()
    }

    fn all_reduce_mean(&self, rank: usize, grads: &mut GradBuffer) -> Result<(), TrainError> {
        check_rank(rank, self.local.world_size())?;
        self.local.all_reduce_mean(rank, grads)?;
        let Some((layout, flat)) = Flat::take(grads) else {
            return Ok(());
        };
        let device = flat.device();
        if rank == 0 {
            let flat = flat
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::Collective(format!("gradients to the host: {e:?}")));
            let mean = flat.and_then(|f| self.across_processes(f));
            // Published even when it failed, so the other local ranks do not wait forever.
            *self.result.lock().map_err(poisoned)? = Some(mean.map_err(|e| e.to_string()));
        }
        self.barrier.wait()?;
        let mean = self.result.lock().map_err(poisoned)?.clone();
        self.barrier.wait()?;
        if rank == 0 {
            *self.result.lock().map_err(poisoned)? = None;
        }
        let mean = mean
            .ok_or_else(|| TrainError::Collective("no result from local rank 0".into()))?
            .map_err(TrainError::Collective)?;
        // The last holder (local rank 0 when it is the only worker) takes the buffer itself
        // instead of copying it.
        let mean = Arc::try_unwrap(mean).unwrap_or_else(|shared| shared.to_vec());
        let n = mean.len();
        layout.set(
            grads,
            Tensor::from_data(TensorData::new(mean, [n]), &device),
        );
        Ok(())
    }

    fn abandon(&self) {
        self.local.abandon();
        self.barrier.break_all();
    }
}

/// The collective for data-parallel workers on `devices` (rank `r` on `devices[r]`): nothing to
/// combine for one device, [`ThreadCollective`] when all are the CPU (threads sharing its cores:
/// for verification, it is not faster than one worker), [`DeviceCollective`] when all are
/// distinct GPUs. A mix of CPU and GPU, or a GPU listed twice, is an error.
pub fn for_devices(devices: &[Device]) -> Result<Arc<dyn Collective>, TrainError> {
    let cpu = fsvfm_model::cpu_device();
    let on_cpu = devices.iter().filter(|d| **d == cpu).count();
    match devices.len() {
        0 => Err(TrainError::Config("no device given".into())),
        1 => Ok(Arc::new(SingleWorker)),
        n if on_cpu == n => Ok(Arc::new(ThreadCollective::new(n))),
        n if on_cpu > 0 => Err(TrainError::Config(format!(
            "{on_cpu} of the {n} devices are the CPU: data parallelism runs on CPU threads or on GPUs, not both"
        ))),
        n => {
            let distinct = (0..n).all(|i| !devices[..i].contains(&devices[i]));
            if !distinct {
                return Err(TrainError::Config(
                    "a GPU is listed twice: give each data-parallel worker its own device".into(),
                ));
            }
            Ok(Arc::new(DeviceCollective::new(devices.to_vec())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(v: f32) -> GradBuffer {
        let mut g = GradBuffer::new();
        let t =
            Tensor::<1>::from_data(TensorData::new(vec![v; 3], [3]), &fsvfm_model::cpu_device());
        g.set(BTreeMap::from([("w".to_string(), t)]));
        g
    }

    #[test]
    fn a_stopped_worker_releases_the_others_with_an_error() {
        let group = Arc::new(ThreadCollective::new(3));
        let (done, results) = std::sync::mpsc::channel();
        for rank in 0..2 {
            let (g, done) = (group.clone(), done.clone());
            std::thread::spawn(move || {
                let _ = done.send(g.all_reduce_mean(rank, &mut grads(rank as f32)));
            });
        }
        // Rank 2 dies instead of arriving (its thread's guard calls abandon).
        std::thread::sleep(std::time::Duration::from_millis(50));
        group.abandon();
        for _ in 0..2 {
            let r = results
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("a worker still waits for the stopped one");
            let e = r.unwrap_err().to_string();
            assert!(e.contains("worker stopped"), "{e}");
        }
        // Later calls fail at once instead of waiting.
        assert!(group.all_reduce_mean(0, &mut grads(0.0)).is_err());
    }

    #[test]
    fn a_rendezvous_is_reusable_round_after_round() {
        let group = Arc::new(ThreadCollective::new(2));
        let other = {
            let g = group.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let mut x = grads(i as f32);
                        g.all_reduce_mean(1, &mut x).unwrap();
                        x.get("w")
                            .unwrap()
                            .clone()
                            .into_data()
                            .try_into_vec::<f32>()
                            .unwrap()[0]
                    })
                    .collect::<Vec<f32>>()
            })
        };
        for i in 0..50 {
            let mut x = grads(-(i as f32) + 1.0);
            group.all_reduce_mean(0, &mut x).unwrap();
        }
        // Mean of (1 − i) and i.
        assert!(other.join().unwrap().iter().all(|&m| m == 0.5));
    }
}

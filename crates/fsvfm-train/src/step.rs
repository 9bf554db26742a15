//! One pre-training iteration (spec §1.4, §3; `engine_pretrain.py`): the online network on the
//! masked view with gradients, the target on the full view without, the three losses,
//! accumulation, global clipping, AdamW, and the EMA of the target.

use burn::module::Module;
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use fsvfm_model::loss::{LossWeights, PretrainLosses, pretrain_losses_weighted};
use fsvfm_model::{FsfmPretrain, PatchMask, TargetNetwork};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::ema::ema_update;
use crate::optim::{AdamW, GradBuffer};
use crate::params::{map_params, update_in_place};

/// One batch on the host: images `[N, C, H, W]` (normalised), mask and covered-region mask
/// `[N, L]` (1 = masked / in the region).
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `[N, C, H, W]` row-major.
    pub images: Vec<f32>,
    /// Image batch shape.
    pub dims: [usize; 4],
    /// `[N, L]`, 1 = masked.
    pub mask: Vec<u8>,
    /// `[N, L]`, 1 = in the fully covered facial region.
    pub region: Vec<u8>,
}

impl HostBatch {
    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        self.mask.len() / self.dims[0].max(1)
    }

    /// The batch cut into `world` consecutive shards of equal size (shard `r` for data-parallel
    /// rank `r`, as a `DistributedSampler` gives each rank its part of the global batch).
    pub fn shards(&self, world: usize) -> Result<Vec<HostBatch>, TrainError> {
        let [n, c, h, w] = self.dims;
        if world == 0 || n % world != 0 {
            return Err(TrainError::Config(format!(
                "a batch of {n} cannot be split evenly over {world} workers"
            )));
        }
        let (b, l) = (n / world, self.num_patches());
        let (img, pat) = (b * c * h * w, b * l);
        Ok((0..world)
            .map(|r| HostBatch {
                images: self.images[r * img..(r + 1) * img].to_vec(),
                dims: [b, c, h, w],
                mask: self.mask[r * pat..(r + 1) * pat].to_vec(),
                region: self.region[r * pat..(r + 1) * pat].to_vec(),
            })
            .collect())
    }
}

/// The loss terms of one batch as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossValues {
    /// `L_rec^m`.
    pub rec_masked: f64,
    /// `L_rec^fr`.
    pub rec_region: f64,
    /// `L_sim`.
    pub sim: f64,
    /// The weighted total.
    pub total: f64,
}

impl LossValues {
    /// Whether every term is finite.
    pub fn is_finite(&self) -> bool {
        self.terms().iter().all(|v| v.is_finite())
    }

    /// `[rec_masked, rec_region, sim, total]`.
    pub fn terms(&self) -> [f64; 4] {
        [self.rec_masked, self.rec_region, self.sim, self.total]
    }

    /// The inverse of [`LossValues::terms`] (a slice of four).
    pub fn from_terms(t: &[f64]) -> Self {
        let at = |i: usize| t.get(i).copied().unwrap_or(f64::NAN);
        Self {
            rec_masked: at(0),
            rec_region: at(1),
            sim: at(2),
            total: at(3),
        }
    }

    /// The mean of each term over `values`, summed in order (zeros for none): an epoch's mean
    /// loss, or the mean over data-parallel ranks (DDP's logged loss).
    pub fn mean(values: &[LossValues]) -> Self {
        let mut sum = [0.0f64; 4];
        for v in values {
            for (s, t) in sum.iter_mut().zip(v.terms()) {
                *s += t;
            }
        }
        Self::from_terms(&sum.map(|s| s / values.len().max(1) as f64))
    }

    fn read(l: &PretrainLosses) -> Self {
        let all = Tensor::cat(
            vec![
                l.rec_masked.clone(),
                l.rec_region.clone(),
                l.sim.clone(),
                l.total.clone(),
            ],
            0,
        );
        let v: Vec<f32> = all
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let g = |i: usize| v.get(i).copied().unwrap_or(f32::NAN) as f64;
        Self {
            rec_masked: g(0),
            rec_region: g(1),
            sim: g(2),
            total: g(3),
        }
    }
}

/// What one optimiser update did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpdateInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// False when the norm was not finite and the update was skipped.
    pub applied: bool,
}

/// Every parameter as a fresh contiguous buffer. A loaded checkpoint holds some weights as
/// transposed views (the PyTorch → burn layout change), and the GEMM then accumulates in another
/// order than on the contiguous weights of the uninterrupted run: the last bits differ and a
/// resume would not be exact.
fn canonical<M: Module>(module: M) -> M {
    map_params(module, |_, v| {
        let device = v.device();
        Tensor::from_data(v.into_data(), &device)
    })
}

/// Online network (trained, on the autodiff device), EMA target (plain device), optimiser and the
/// gradients accumulated since the last update.
#[derive(Debug)]
pub struct PretrainTrainer {
    /// The online network, on `device.autodiff()`.
    pub online: FsfmPretrain,
    /// The target network, on the plain `device`.
    pub target: TargetNetwork,
    /// AdamW state.
    pub optim: AdamW,
    /// Gradients of the micro-steps since the last update.
    pub grads: GradBuffer,
    device: Device,
    patch: usize,
    norm_pix: bool,
    weights: LossWeights,
}

impl PretrainTrainer {
    /// Puts `online` on the autodiff version of `device` and `target` on `device`.
    pub fn new(
        online: FsfmPretrain,
        target: TargetNetwork,
        optim: AdamW,
        device: &Device,
        patch: usize,
        norm_pix: bool,
    ) -> Self {
        let plain = device.clone();
        // Fresh leaf tensors: parameters loaded from a file can carry the graph of the load's
        // layout transforms, which the first backward would consume.
        // (`valid()` keeps each parameter's trainability, `train()` rebuilds leaves from it.)
        let online = online.to_device(&plain.clone().autodiff()).valid().train();
        Self {
            online: canonical(online),
            // `valid()` takes the target off autodiff (a plain `to_device` keeps the wrapper); it
            // then runs the fused inference kernels, as after a reload.
            target: canonical(target.to_device(&plain).valid().no_grad()),
            optim,
            grads: GradBuffer::new(),
            device: plain,
            patch,
            norm_pix,
            weights: LossWeights::default(),
        }
    }

    /// A copy of this trainer on `device` (a data-parallel replica): the same online and target
    /// weights, optimiser state and loss settings; no accumulated gradients.
    pub fn replica(&self, device: &Device) -> Self {
        Self::new(
            self.online.clone(),
            self.target.clone(),
            self.optim.to_device(device),
            device,
            self.patch,
            self.norm_pix,
        )
        .with_weights(self.weights)
    }

    /// Other weights of the auxiliary losses than the official ones (ablations).
    pub fn with_weights(mut self, weights: LossWeights) -> Self {
        self.weights = weights;
        self
    }

    /// The plain (non-autodiff) device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Forward of both networks and the losses, on the autodiff device.
    pub fn losses(&self, batch: &HostBatch) -> Result<PretrainLosses, TrainError> {
        let [n, _, _, _] = batch.dims;
        let l = batch.num_patches();
        let ad = self.device.clone().autodiff();
        let data = || TensorData::new(batch.images.clone(), batch.dims);
        let mask = PatchMask::new(n, l, batch.mask.clone())?;
        // Target: full view, plain device (no graph, fast kernels), then into the graph as a
        // constant. It runs beside the online forward, whose burn ops leave a core idle at
        // times (before our GELU/softmax ops, `perf stat` saw 1.23 of 2 CPUs busy). Without the
        // ID loss the target is not run: a zero `z` makes `L_sim` (and its gradient) 0.
        let (out, z) = rayon::join(
            || self.online.forward(Tensor::from_data(data(), &ad), &mask),
            || {
                (self.weights.sim != 0.0)
                    .then(|| self.target.forward(Tensor::from_data(data(), &self.device)))
                    .transpose()
            },
        );
        let out = out?;
        let z = match z? {
            Some(z) => Tensor::from_inner(z),
            None => Tensor::zeros(out.p.dims(), &ad),
        };
        let as_float = |m: &[u8]| {
            let v: Vec<f32> = m.iter().map(|&b| b as f32).collect();
            Tensor::<2>::from_data(TensorData::new(v, [n, l]), &ad)
        };
        Ok(pretrain_losses_weighted(
            Tensor::from_data(data(), &ad),
            out.pred,
            as_float(&batch.mask),
            as_float(&batch.region),
            out.p,
            z,
            self.patch,
            self.norm_pix,
            self.weights,
        ))
    }

    /// Forward + backward of one micro-step: gradients of `total / accum_iter` are added to the
    /// buffer. A batch with a non-finite loss adds nothing (the caller counts it).
    pub fn micro_step(
        &mut self,
        batch: &HostBatch,
        accum_iter: usize,
    ) -> Result<LossValues, TrainError> {
        let (values, grads) = self.forward_backward(batch, accum_iter)?;
        if let Some(g) = grads {
            self.add_grads(g);
        }
        Ok(values)
    }

    /// The loss terms and, when they are finite, the gradients of `total / accum_iter`, without
    /// adding them to the buffer: a data-parallel worker adds them only once every worker's
    /// shard was finite (see [`crate::parallel`]).
    pub fn forward_backward(
        &self,
        batch: &HostBatch,
        accum_iter: usize,
    ) -> Result<(LossValues, Option<Gradients>), TrainError> {
        let losses = self.losses(batch)?;
        let values = LossValues::read(&losses);
        let grads = values
            .is_finite()
            .then(|| losses.total.div_scalar(accum_iter.max(1) as f64).backward());
        Ok((values, grads))
    }

    /// Adds the gradients of one backward pass (from [`PretrainTrainer::forward_backward`]).
    pub fn add_grads(&mut self, grads: Gradients) {
        self.grads.add(&self.online, grads);
    }

    /// Clips the accumulated gradients to `clip` (global norm; `None` = no clip), applies AdamW
    /// at `lr` and clears the buffer. A non-finite norm skips the update.
    pub fn update(&mut self, lr: f64, clip: Option<f64>) -> UpdateInfo {
        let grad_norm = match clip {
            Some(c) => self.grads.clip_global_norm(c),
            None => self.grads.global_norm(),
        };
        let applied = grad_norm.is_finite() && !self.grads.is_empty();
        if applied {
            let (optim, grads) = (&mut self.optim, &self.grads);
            update_in_place(&mut self.online, |online| optim.update(online, grads, lr));
        }
        self.grads.clear();
        UpdateInfo { grad_norm, applied }
    }

    /// EMA of the target towards the online network with momentum `m`.
    pub fn ema(&mut self, m: f64) {
        let online = &self.online;
        update_in_place(&mut self.target, |target| ema_update(target, online, m));
    }
}

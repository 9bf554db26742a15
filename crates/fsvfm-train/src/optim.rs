//! AdamW as PyTorch computes it, with timm's `add_weight_decay` groups, gradient accumulation and
//! a global gradient-norm clip (`torch.nn.utils.clip_grad_norm_`), all keyed by parameter name.
//!
//! Why not burn's `AdamW`: its state is keyed by `ParamId`, which a safetensors reload does not
//! keep (`spec/burn-notes.md` §5), and its clipping is per tensor (§4d). Keying by name makes the
//! optimiser state a plain name → tensor file that survives any reload, like torch's.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};
use serde::{Deserialize, Serialize};

use fsvfm_model::cpu_kernels::{AdamCoeffs, adamw_inplace, scale_inplace, sum_squares};
use fsvfm_model::layers::{host_f32, host_param, host_tensor, map_host};
use fsvfm_model::train_ops::on_flex;

use crate::params::{map_params, named_params};

/// AdamW hyper-parameters (the pre-training recipe: betas (0.9, 0.95), wd 0.05, eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWSettings {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε added to `sqrt(v̂)`.
    pub eps: f64,
    /// Decoupled weight decay for the decayed group.
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.05,
        }
    }
}

/// timm `add_weight_decay`: no decay for 1-D parameters (norms, biases of any kind) and names
/// ending in `bias`; everything else (weights, `cls_token`, `mask_token`) is decayed.
pub fn is_decayed(name: &str, shape: &[usize]) -> bool {
    !(shape.len() == 1 || name.ends_with("bias"))
}

/// Summed gradients of the trainable parameters over the micro-steps of one optimiser step,
/// name → flattened `[numel]` tensor (no autodiff).
#[derive(Debug, Default, Clone)]
pub struct GradBuffer {
    sums: BTreeMap<String, Tensor<1>>,
}

impl GradBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the gradients of `module`'s parameters from one backward pass.
    pub fn add<M: Module>(&mut self, module: &M, mut grads: Gradients) {
        struct Take<'a> {
            path: Vec<String>,
            grads: &'a mut Gradients,
            sums: &'a mut BTreeMap<String, Tensor<1>>,
        }
        impl ModuleVisitor for Take<'_> {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let value = param.val();
                if !value.is_require_grad() {
                    return;
                }
                let Some(g) = value.grad_remove(self.grads) else {
                    return;
                };
                let numel: usize = g.dims().iter().product();
                let g = g.reshape([numel]);
                let name = self.path.join(".");
                let sum = match self.sums.remove(&name) {
                    Some(s) => s + g,
                    None => g,
                };
                self.sums.insert(name, sum);
            }
        }
        module.visit(&mut Take {
            path: Vec::new(),
            grads: &mut grads,
            sums: &mut self.sums,
        });
    }

    /// Whether no gradient has been added since the last [`GradBuffer::clear`].
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Drops the gradients.
    pub fn clear(&mut self) {
        self.sums.clear();
    }

    /// The summed gradient of one parameter.
    pub fn get(&self, name: &str) -> Option<&Tensor<1>> {
        self.sums.get(name)
    }

    /// Moves the gradients out (name → flattened tensor), leaving the buffer empty.
    pub fn take(&mut self) -> BTreeMap<String, Tensor<1>> {
        std::mem::take(&mut self.sums)
    }

    /// Replaces the gradients.
    pub fn set(&mut self, sums: BTreeMap<String, Tensor<1>>) {
        self.sums = sums;
    }

    /// L2 norm over all gradients together (torch `clip_grad_norm_`'s total norm). On the flex
    /// device the squares are summed on the host in f64 over fixed chunks, on all threads (the
    /// result does not depend on the thread count).
    pub fn global_norm(&self) -> f64 {
        let mut total: Option<Tensor<1>> = None;
        let mut host = 0.0f64;
        for g in self.sums.values() {
            if on_flex(&g.device()) {
                host += sum_squares(&host_param(g.clone()));
                continue;
            }
            let s = g.clone().square().sum();
            total = Some(match total {
                Some(t) => t + s,
                None => s,
            });
        }
        let device_sum = total.map_or(0.0, |t| t.into_scalar::<f32>() as f64);
        (host + device_sum).sqrt()
    }

    /// Global clip to `max_norm` (torch: `coef = max_norm / (norm + 1e-6)`, applied when < 1).
    /// Returns the norm before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.global_norm();
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            // Moved out of the map so that each buffer is taken over, not copied.
            let sums = std::mem::take(&mut self.sums);
            self.sums = sums
                .into_iter()
                .map(|(name, g)| {
                    if !on_flex(&g.device()) {
                        return (name, g.mul_scalar(coef));
                    }
                    (name, map_host(g, |v| scale_inplace(v, coef as f32)))
                })
                .collect();
        }
        norm
    }
}

/// AdamW state: the update count and the first/second moments per parameter name.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// Settings.
    pub settings: AdamWSettings,
    /// Number of updates done (torch's per-parameter `step`; equal for all here).
    pub step: u64,
    /// `exp_avg` per parameter, flattened.
    pub exp_avg: BTreeMap<String, Tensor<1>>,
    /// `exp_avg_sq` per parameter, flattened.
    pub exp_avg_sq: BTreeMap<String, Tensor<1>>,
    /// Plain Adam with L2 regularisation (torch `Adam(weight_decay=…)`: `g += wd·p` before the
    /// moments) instead of AdamW's decoupled decay; the FAS recipe's optimiser.
    pub coupled_l2: bool,
    /// Whether flex-device parameters take the one-pass host update ([`adamw_inplace`]) instead
    /// of burn tensor ops (on by default; off only to compare the two).
    pub fused: bool,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            settings: AdamWSettings::default(),
            step: 0,
            exp_avg: BTreeMap::new(),
            exp_avg_sq: BTreeMap::new(),
            coupled_l2: false,
            fused: true,
        }
    }
}

impl AdamW {
    /// A fresh optimiser.
    pub fn new(settings: AdamWSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// The same state with its moments on `device` (a data-parallel replica's optimiser).
    pub fn to_device(&self, device: &burn::tensor::Device) -> Self {
        let moved = |m: &BTreeMap<String, Tensor<1>>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.clone().to_device(device)))
                .collect()
        };
        Self {
            exp_avg: moved(&self.exp_avg),
            exp_avg_sq: moved(&self.exp_avg_sq),
            ..self.clone()
        }
    }

    /// torch `Adam` (L2 weight decay added to the gradient) with these settings.
    pub fn adam(settings: AdamWSettings) -> Self {
        Self {
            coupled_l2: true,
            ..Self::new(settings)
        }
    }

    /// One update of every parameter of `module` that has a gradient in `grads`, at learning rate
    /// `lr` (torch `_single_tensor_adamw`: decay `p·(1 − lr·wd)`, then
    /// `p − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + ε)`), with timm's decay groups.
    pub fn update<M: Module>(&mut self, module: M, grads: &GradBuffer, lr: f64) -> M {
        self.update_with(module, grads, lr, |name, shape| {
            (1.0, is_decayed(name, shape))
        })
    }

    /// [`AdamW::update`] with per-parameter groups: `group(name, shape)` gives the lr multiplier
    /// (layer-wise decay) and whether the parameter is weight-decayed.
    pub fn update_with<M: Module>(
        &mut self,
        module: M,
        grads: &GradBuffer,
        lr: f64,
        group: impl Fn(&str, &[usize]) -> (f64, bool),
    ) -> M {
        let s = self.settings;
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - s.beta1.powi(t);
        let bc2_sqrt = (1.0 - s.beta2.powi(t)).sqrt();
        let groups: BTreeMap<String, (f64, bool)> = named_params(&module)
            .into_iter()
            .map(|p| {
                let g = group(&p.name, &p.shape);
                (p.name, g)
            })
            .collect();
        let (exp_avg, exp_avg_sq) = (&mut self.exp_avg, &mut self.exp_avg_sq);
        let coupled = self.coupled_l2;
        let fused = self.fused;
        map_params(module, |name, p| {
            let Some(g) = grads.get(name) else {
                return p;
            };
            let (scale, decayed) = groups.get(name).copied().unwrap_or((1.0, true));
            let lr = lr * scale;
            let wd = if decayed { s.weight_decay } else { 0.0 };
            let (m, v) = (exp_avg.remove(name), exp_avg_sq.remove(name));
            let (p, m, v) = if fused && on_flex(&p.device()) {
                let c = AdamCoeffs {
                    beta1: (s.beta1 as f32, (1.0 - s.beta1) as f32),
                    beta2: (s.beta2 as f32, (1.0 - s.beta2) as f32),
                    coupled_wd: if coupled { wd as f32 } else { 0.0 },
                    decay: if coupled { 1.0 } else { (1.0 - lr * wd) as f32 },
                    bc2_sqrt: bc2_sqrt as f32,
                    eps: s.eps as f32,
                    step_size: (lr / bc1) as f32,
                };
                adamw_host(p, g, m, v, &c)
            } else {
                adamw_ops(p, g.clone(), m, v, &s, coupled, wd, lr, bc1, bc2_sqrt)
            };
            exp_avg.insert(name.to_string(), m);
            exp_avg_sq.insert(name.to_string(), v);
            p
        })
    }
}

/// One parameter's AdamW update in one pass of [`adamw_inplace`] over host buffers (the flex
/// device: `p`, `m`, `v` are moved out of their tensors without a copy when they own their
/// storage). Returns the new `(p, m, v)`.
fn adamw_host(
    p: Tensor<1>,
    g: &Tensor<1>,
    m: Option<Tensor<1>>,
    v: Option<Tensor<1>>,
    c: &AdamCoeffs,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let device = p.device();
    let n = p.dims()[0];
    let mut p = host_f32(p);
    let g = host_param(g.clone());
    let moment = |t: Option<Tensor<1>>| t.map_or_else(|| vec![0.0; n], host_f32);
    let (mut m, mut v) = (moment(m), moment(v));
    adamw_inplace(&mut p, &g, &mut m, &mut v, c);
    let back = |x: Vec<f32>| host_tensor(x, &device);
    (back(p), back(m), back(v))
}

/// The same update as burn tensor ops (devices other than flex, where a host round trip would
/// cost more than it saves), in the order [`adamw_inplace`] follows.
#[allow(clippy::too_many_arguments)]
fn adamw_ops(
    p: Tensor<1>,
    mut g: Tensor<1>,
    m: Option<Tensor<1>>,
    v: Option<Tensor<1>>,
    s: &AdamWSettings,
    coupled: bool,
    wd: f64,
    lr: f64,
    bc1: f64,
    bc2_sqrt: f64,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    if coupled && wd != 0.0 {
        g = g + p.clone().mul_scalar(wd);
    }
    let m = match m {
        Some(m) => m.mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1),
        None => g.clone().mul_scalar(1.0 - s.beta1),
    };
    let v = match v {
        Some(v) => v.mul_scalar(s.beta2) + g.square().mul_scalar(1.0 - s.beta2),
        None => g.square().mul_scalar(1.0 - s.beta2),
    };
    let p = if !coupled && wd != 0.0 {
        p.mul_scalar(1.0 - lr * wd)
    } else {
        p
    };
    let denom = v.clone().sqrt().div_scalar(bc2_sqrt).add_scalar(s.eps);
    let p = p - (m.clone() / denom).mul_scalar(lr / bc1);
    (p, m, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    /// Deterministic values of order `scale` (the device RNG is shared by concurrent tests).
    fn wave(n: usize, phase: f32, scale: f32, device: &Device) -> Tensor<1> {
        let v = (0..n)
            .map(|i| scale * (i as f32 * 0.731 + phase).sin())
            .collect::<Vec<_>>();
        host_tensor(v, device)
    }

    /// Three updates of a small linear layer with changing gradients: params, then m, then v.
    fn run(mut opt: AdamW, device: &Device) -> Vec<Vec<f32>> {
        let layer: Linear = LinearConfig::new(37, 29).init(device);
        let mut layer = map_params(layer, |_, p| wave(p.dims()[0], 0.3, 0.5, device));
        let mut grads = GradBuffer::new();
        for step in 0..3 {
            let sums = named_params(&layer)
                .into_iter()
                .map(|p| {
                    let g = wave(p.numel(), step as f32, 0.1 * (step + 1) as f32, device);
                    (p.name, g)
                })
                .collect();
            grads.set(sums);
            layer = opt.update(layer, &grads, 1e-2);
        }
        let mut out: Vec<Vec<f32>> = named_params(&layer)
            .into_iter()
            .map(|p| host_f32(p.value))
            .collect();
        let moments = opt.exp_avg.values().chain(opt.exp_avg_sq.values());
        out.extend(moments.map(|t| host_f32(t.clone())));
        out
    }

    /// The one-pass host update gives what the tensor-op update gives (same f32 operation order:
    /// ≤ 1e-6 absolute on parameters and moments of order 0.01–1), for AdamW and coupled Adam.
    #[test]
    fn fused_update_matches_the_tensor_op_update() {
        let device = Device::flex();
        let settings = AdamWSettings {
            weight_decay: 0.3,
            ..AdamWSettings::default()
        };
        for base in [AdamW::new(settings), AdamW::adam(settings)] {
            let fused = run(base.clone(), &device);
            let ops = run(
                AdamW {
                    fused: false,
                    ..base.clone()
                },
                &device,
            );
            assert_eq!(fused.len(), 6);
            for (a, b) in fused.iter().zip(&ops) {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(
                    d <= 1e-6,
                    "fused vs ops max diff {d:e} (coupled {})",
                    base.coupled_l2
                );
            }
            // The update moved the parameters (the comparison is not of two untouched copies).
            let start = host_f32(wave(fused[0].len(), 0.3, 0.5, &device));
            let moved = fused[0]
                .iter()
                .zip(&start)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(moved > 1e-3, "parameters moved by {moved:e}");
        }
    }
}

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

    /// L2 norm over all gradients together (torch `clip_grad_norm_`'s total norm).
    pub fn global_norm(&self) -> f64 {
        let mut total: Option<Tensor<1>> = None;
        for g in self.sums.values() {
            let s = g.clone().square().sum();
            total = Some(match total {
                Some(t) => t + s,
                None => s,
            });
        }
        total.map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
    }

    /// Global clip to `max_norm` (torch: `coef = max_norm / (norm + 1e-6)`, applied when < 1).
    /// Returns the norm before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.global_norm();
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in self.sums.values_mut() {
                *g = g.clone().mul_scalar(coef);
            }
        }
        norm
    }
}

/// AdamW state: the update count and the first/second moments per parameter name.
#[derive(Debug, Default, Clone)]
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
}

impl AdamW {
    /// A fresh optimiser.
    pub fn new(settings: AdamWSettings) -> Self {
        Self {
            settings,
            ..Self::default()
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
        map_params(module, |name, p| {
            let mut g = grads.get(name)?.clone();
            let (scale, decayed) = groups.get(name).copied().unwrap_or((1.0, true));
            let lr = lr * scale;
            if coupled && decayed && s.weight_decay != 0.0 {
                g = g + p.clone().mul_scalar(s.weight_decay);
            }
            let m = match exp_avg.remove(name) {
                Some(m) => m.mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1),
                None => g.clone().mul_scalar(1.0 - s.beta1),
            };
            let v = match exp_avg_sq.remove(name) {
                Some(v) => v.mul_scalar(s.beta2) + g.square().mul_scalar(1.0 - s.beta2),
                None => g.square().mul_scalar(1.0 - s.beta2),
            };
            let p = if !coupled && decayed && s.weight_decay != 0.0 {
                p.mul_scalar(1.0 - lr * s.weight_decay)
            } else {
                p
            };
            let denom = v.clone().sqrt().div_scalar(bc2_sqrt).add_scalar(s.eps);
            let p = p - (m.clone() / denom).mul_scalar(lr / bc1);
            exp_avg.insert(name.to_string(), m);
            exp_avg_sq.insert(name.to_string(), v);
            Some(p)
        })
    }
}

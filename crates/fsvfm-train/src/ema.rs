//! EMA of the target network (spec §1.4): for every parameter name present in both networks,
//! fixed tables included, `θ_t ← m·θ_t + (1 − m)·θ_o`.

use std::collections::BTreeMap;

use burn::module::Module;
use fsvfm_model::cpu_kernels::ema_inplace;
use fsvfm_model::layers::{host_param, map_host};
use fsvfm_model::train_ops::on_flex;

use crate::params::{map_params, param_values};

/// Moves `target` towards `online` with momentum `m`; parameters of `target` that `online` lacks
/// are left as they are (there are none for the FS-VFM networks).
///
/// On the flex device each parameter is updated in one pass over host buffers
/// ([`ema_inplace`], the same f32 arithmetic as the tensor ops used elsewhere).
pub fn ema_update<T: Module, O: Module>(target: T, online: &O, m: f64) -> T {
    let src: BTreeMap<_, _> = param_values(online);
    map_params(target, |name, t| {
        let Some(o) = src.get(name) else {
            return t;
        };
        if !on_flex(&t.device()) {
            return t.mul_scalar(m) + o.clone().mul_scalar(1.0 - m);
        }
        let o = host_param(o.clone());
        map_host(t, |t| ema_inplace(t, &o, m as f32, (1.0 - m) as f32))
    })
}

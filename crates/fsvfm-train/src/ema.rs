//! EMA of the target network (spec §1.4): for every parameter name present in both networks,
//! fixed tables included, `θ_t ← m·θ_t + (1 − m)·θ_o`.

use std::collections::BTreeMap;

use burn::module::Module;

use crate::params::{map_params, param_values};

/// Moves `target` towards `online` with momentum `m`; parameters of `target` that `online` lacks
/// are left as they are (there are none for the FS-VFM networks).
pub fn ema_update<T: Module, O: Module>(target: T, online: &O, m: f64) -> T {
    let src: BTreeMap<_, _> = param_values(online);
    map_params(target, |name, t| {
        src.get(name)
            .map(|o| t.mul_scalar(m) + o.clone().mul_scalar(1.0 - m))
    })
}

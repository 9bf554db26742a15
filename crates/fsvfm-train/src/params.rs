//! Parameters by name: the module path of every float parameter (`blocks.0.attn.qkv.weight`;
//! burn field names, so LayerNorm `gamma`/`beta`), with its id and value.
//!
//! Optimiser state and the EMA pair parameters by these names, not by burn `ParamId`s, so they
//! survive a reload from safetensors (`spec/burn-notes.md` §5: ids are not kept by that route)
//! and pair the online with the target network (same names, different ids).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// One float parameter seen by [`named_params`].
#[derive(Debug, Clone)]
pub struct NamedParam {
    /// Burn module path, dot-joined.
    pub name: String,
    /// Parameter id (for looking up gradients of this module instance).
    pub id: ParamId,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether the parameter is trained (false for the fixed sin-cos tables).
    pub trainable: bool,
    /// The value, flattened to `[numel]`, without autodiff.
    pub value: Tensor<1>,
}

impl NamedParam {
    /// Element count.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every float parameter of `module`, in visiting order.
pub fn named_params<M: Module>(module: &M) -> Vec<NamedParam> {
    struct Collect {
        path: Vec<String>,
        out: Vec<NamedParam>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            let numel: usize = shape.iter().product();
            self.out.push(NamedParam {
                name: self.path.join("."),
                id: param.id,
                shape,
                trainable: t.is_require_grad(),
                value: t.inner().reshape([numel]),
            });
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut c);
    c.out
}

/// Replaces parameter values by name: `f(name, current flattened value)` returns the new flattened
/// value (without autodiff; the value it was given to keep the parameter). Ids and trainability
/// are kept.
///
/// `f` owns the value: when nothing else holds the module's buffers (no clone of the module
/// alive), in-place host kernels update them without a copy.
pub fn map_params<M: Module>(module: M, f: impl FnMut(&str, Tensor<1>) -> Tensor<1>) -> M {
    struct Map<F> {
        path: Vec<String>,
        f: F,
    }
    impl<F: FnMut(&str, Tensor<1>) -> Tensor<1>> ModuleMapper for Map<F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.path.join(".");
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims();
            let numel: usize = dims.iter().product();
            let trainable = tensor.is_require_grad();
            let autodiff = tensor.device().is_autodiff();
            let new = (self.f)(&name, tensor.inner().reshape([numel]));
            let mut value = new.reshape(dims);
            if autodiff {
                value = Tensor::from_inner(value);
                if trainable {
                    value = value.require_grad();
                }
            }
            Param::from_mapped_value(id, value, mapper)
        }
    }
    module.map(&mut Map {
        path: Vec::new(),
        f,
    })
}

/// The parameters of `module` as a name → flattened value map (no autodiff).
pub fn param_values<M: Module>(module: &M) -> BTreeMap<String, Tensor<1>> {
    named_params(module)
        .into_iter()
        .map(|p| (p.name, p.value))
        .collect()
}

/// Replaces `*slot` by `f(*slot)` without a copy of the old value. The networks are updated by
/// value (burn modules map by value); with a clone in between, every parameter buffer would be
/// shared with the clone and the in-place host updates (AdamW, EMA) would copy it first: about
/// 1 % of a pre-training step.
///
/// A panic inside `f` aborts the process (after the panic message is printed), since `*slot`
/// has been moved out and cannot be dropped twice; `f` is the optimiser or the EMA, which do not
/// panic on any input.
pub fn update_in_place<M>(slot: &mut M, f: impl FnOnce(M) -> M) {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: the value read out of `slot` is consumed by `f` and a new value is written back
    // before `slot` is used again; if `f` unwinds, the guard aborts before anything can observe
    // or drop the moved-out `slot`.
    unsafe {
        let old = std::ptr::read(slot);
        let new = f(old);
        std::ptr::write(slot, new);
    }
    std::mem::forget(guard);
}

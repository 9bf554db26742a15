//! Differentiable GELU, softmax, biased Linear, multi-head attention and LayerNorm for training on
//! the flex CPU backend.
//!
//! burn flex's own GELU (forward and backward) is a scalar `erff` loop on one thread
//! (`../shared/spec/cpu-perf.md` §3), and its attention softmax is seven autodiff ops (max,
//! clamp, sub, scalar `expf`, sum, clamp, div), each a pass over `[N, H, T, T]` forward and
//! backward; in a pre-training step they took ~10 % of the CPU samples while the second core
//! idled. Here they are a burn backend extension whose flex implementation runs the
//! vectorised, multi-threaded kernels of [`crate::cpu_kernels`], and whose autodiff
//! implementation registers a hand-written backward (`d GELU/dx = Φ(x) + x·φ(x)`;
//! softmax: `dx = y ⊙ (g − Σ g ⊙ y)`).
//!
//! The same route then took the rest of the block's overhead (BENCHMARKS.md, pre-training
//! step: −15–20 % and −20 % step time):
//! - [`linear`]: flex's matmul output is a zeroed buffer that burn re-allocates at 16-byte
//!   alignment and copies before the GEMM writes it, and the bias is a separate broadcast add
//!   with its own reduction in the backward. Here the output starts as the bias rows, one
//!   strided GEMM accumulates onto them, and the backward's `g·wᵀ` and `xᵀ·g` read the
//!   transposes in place.
//! - [`attention_qkv`]: the inference kernel as the forward (no head split/merge copies), and a
//!   backward that recomputes each head's probabilities rather than keeping `[N, H, T, T]`
//!   alive from the forward (less memory; the extra `q·kᵀ` is small next to the linear layers).
//! - [`layer_norm`]: the inference kernel as the forward, and a backward that recomputes the
//!   row statistics, instead of burn's composition of six element-wise ops and their backwards
//!   (−7–10 % step time).
//!
//! Other backends (CUDA) keep burn's ops: each public function falls back to them.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Device, Tensor, TensorData, activation};

use crate::cpu_kernels::HostBuf;

/// The training kernels as a backend extension (flex, and autodiff over flex).
#[backend_extension(Autodiff, Flex)]
pub trait TrainKernels: burn::backend::Backend {
    /// Exact (erf) GELU, element-wise.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last axis.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x [M, K] · w [K, N] + b [N]` → `[M, N]` (a Linear layer in burn's weight layout).
    fn linear_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// Multi-head self-attention from the fused projection: `qkv [N, T, 3D]` (timm's
    /// `3, H, hd` column layout) → `[N, T, D]`, `softmax(q kᵀ / √hd) v` per head.
    fn attention_qkv(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self>;
    /// LayerNorm over the last axis with weight `gamma [D]` and bias `beta [D]`, epsilon `eps`.
    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
}

/// The length of the last axis of `t`.
fn last_dim(t: &FlexTensor) -> usize {
    *t.layout()
        .shape()
        .last()
        .expect("a tensor with at least one axis")
}

/// The f32 values of `t`: moved out when `t` owns its buffer alone, else one copy (burn's
/// `into_data` copies a shared buffer twice: out, then again to re-align it).
pub fn flex_values(t: FlexTensor) -> Vec<f32> {
    if !t.is_unique()
        && let Some(v) = t.as_slice::<f32>()
    {
        return v.to_vec();
    }
    t.into_data()
        .try_into_vec::<f32>()
        .expect("the training kernels take f32 tensors")
}

/// `f` on the contiguous f32 values of `t`, into a new tensor of the same shape.
fn map_f32(t: FlexTensor, f: impl FnOnce(&mut [f32])) -> FlexTensor {
    let shape = t.layout().shape().clone();
    let mut v = flex_values(t);
    f(&mut v);
    FlexTensor::from_data(TensorData::new(v, shape))
}

impl TrainKernels for Flex {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Under autodiff the input is also saved for the backward, so it is shared: one pass
        // into a new buffer instead of a copy and an in-place pass.
        if !x.is_unique()
            && let Some(v) = x.as_slice::<f32>()
        {
            let shape = x.layout().shape().clone();
            let y = crate::cpu_kernels::gelu_to_vec(v);
            return FlexTensor::from_data(TensorData::new(y, shape));
        }
        map_f32(x, crate::cpu_kernels::gelu_inplace)
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let cols = last_dim(&x);
        map_f32(x, |v| crate::cpu_kernels::softmax_last_inplace(v, cols))
    }

    fn linear_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (m, n) = (Operand::of(&x).rows, Operand::of(&w).cols);
        let b = contiguous(b);
        assert_eq!(b.len(), n, "linear_bias: bias length");
        // The output starts as the bias rows and the GEMM accumulates onto them: one write of
        // the output instead of burn's zero fill, re-aligning copy, GEMM and broadcast add.
        let mut out = Vec::new();
        crate::cpu_kernels::rows_into(&mut out, Some(&b), m, n);
        matmul_into(&mut out, true, &x, &w, false, false);
        FlexTensor::from_data(TensorData::new(out, [m, n]))
    }

    fn attention_qkv(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        let [n, t, d3] = dims3(&qkv);
        let qkv = contiguous(qkv);
        let out = crate::cpu_kernels::attention_from_qkv(&qkv, n, t, d3 / 3, heads);
        FlexTensor::from_data(TensorData::new(out, [n, t, d3 / 3]))
    }

    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let shape = x.layout().shape().clone();
        let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
        let y = crate::cpu_kernels::layer_norm(&x, gamma.len(), &gamma, Some(&beta), eps as f32);
        FlexTensor::from_data(TensorData::new(y, shape))
    }
}

/// The three axis lengths of a rank-3 tensor.
fn dims3(t: &FlexTensor) -> [usize; 3] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 3, "a rank-3 tensor");
    [s[0], s[1], s[2]]
}

/// The f32 values of `t` in row-major order: read in place when contiguous, else one copy.
pub(crate) fn contiguous(t: FlexTensor) -> HostBuf {
    HostBuf::view(t.clone()).unwrap_or_else(|| HostBuf::from(flex_values(t)))
}

/// The backward of [`TrainKernels::attention_qkv`] from the saved `qkv`
/// ([`crate::cpu_kernels::attention_backward`]).
fn attention_grad(qkv: FlexTensor, g: FlexTensor, heads: usize) -> FlexTensor {
    let [n, t, d3] = dims3(&qkv);
    let (qkv, g) = (contiguous(qkv), contiguous(g));
    let dq = crate::cpu_kernels::attention_backward(&qkv, &g, n, t, d3 / 3, heads);
    FlexTensor::from_data(TensorData::new(dq, [n, t, d3]))
}

/// A 2-D f32 flex tensor read in place by the GEMM: its first element and strides.
struct Operand {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl Operand {
    fn of(t: &FlexTensor) -> Self {
        let layout = t.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        assert!(
            shape.num_dims() == 2 && t.dtype() == DType::F32,
            "the training GEMMs take 2-D f32 tensors"
        );
        let storage: &[f32] = t.storage();
        // SAFETY: the layout addresses elements of `storage` from this offset.
        let ptr = unsafe { storage.as_ptr().add(layout.start_offset()) };
        Self {
            ptr,
            rows: shape[0],
            cols: shape[1],
            rs: strides[0],
            cs: strides[1],
        }
    }

    fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `out = (out +) op(a) · op(b)` with `op` a transpose where asked, `out` row-major `[M, N]`
/// (its length when accumulating, its capacity otherwise: it is then written, never read).
fn matmul_into(
    out: &mut Vec<f32>,
    accumulate: bool,
    a: &FlexTensor,
    b: &FlexTensor,
    ta: bool,
    tb: bool,
) {
    let pick = |t: &FlexTensor, tr: bool| {
        let o = Operand::of(t);
        if tr { o.transposed() } else { o }
    };
    let (a, b) = (pick(a, ta), pick(b, tb));
    assert_eq!(a.cols, b.rows, "matmul: inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if accumulate {
        assert_eq!(out.len(), m * n, "matmul: output length");
    } else {
        out.clear();
        out.reserve(m * n);
    }
    // SAFETY: both operands address their own storage (`Operand::of`); `out` has room for the
    // m·n row-major values, all initialised when accumulating, and the GEMM writes every one of
    // them before `set_len` otherwise.
    unsafe {
        crate::cpu_kernels::gemm_blocks(
            (m, n, k),
            (out.as_mut_ptr(), n),
            accumulate,
            (a.ptr, a.rs, a.cs),
            (b.ptr, b.rs, b.cs),
        );
        out.set_len(m * n);
    }
}

/// `op(a) · op(b)` as a new `[M, N]` flex tensor (see [`matmul_into`]).
fn matmul_new(a: &FlexTensor, b: &FlexTensor, ta: bool, tb: bool) -> FlexTensor {
    let mut out = Vec::new();
    matmul_into(&mut out, false, a, b, ta, tb);
    let (m, n) = (
        if ta {
            Operand::of(a).cols
        } else {
            Operand::of(a).rows
        },
        if tb {
            Operand::of(b).rows
        } else {
            Operand::of(b).cols
        },
    );
    FlexTensor::from_data(TensorData::new(out, [m, n]))
}

/// The backward of [`TrainKernels::linear_bias`] from the saved input and weight:
/// `dx = g·wᵀ`, `dw = xᵀ·g`, `db = Σ_rows g`.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (x, w) = ops.state;
        let [px, pw, pb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        if let Some(node) = pb {
            let cols = last_dim(&g);
            let gv = contiguous(g.clone());
            let db = crate::cpu_kernels::column_sums(&gv, cols);
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(db, [cols])));
        }
        if let Some(node) = pw {
            grads.register::<Flex>(node.id, matmul_new(&x, &g, true, false));
        }
        if let Some(node) = px {
            grads.register::<Flex>(node.id, matmul_new(&g, &w, false, true));
        }
    }
}

/// The backward of [`TrainKernels::layer_norm_affine`] from the saved input and weight
/// ([`crate::cpu_kernels::layer_norm_backward`]: the statistics are recomputed).
#[derive(Debug)]
struct LayerNormBackward {
    eps: f64,
}

impl Backward<Flex, 3> for LayerNormBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (x, gamma) = ops.state;
        let [px, pg, pb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let shape = x.layout().shape().clone();
        let (x, gamma, g) = (contiguous(x), contiguous(gamma), contiguous(g));
        let (dx, dgamma, dbeta) =
            crate::cpu_kernels::layer_norm_backward(&x, &g, &gamma, self.eps as f32);
        let d = gamma.len();
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dbeta, [d])));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dgamma, [d])));
        }
        if let Some(node) = px {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, shape)));
        }
    }
}

/// The backward of a unary op that saved one flex tensor (its input or its output):
/// `grad_in = backward(saved, grad_out, param)`.
#[derive(Debug)]
struct SavedBackward {
    backward: fn(FlexTensor, FlexTensor, usize) -> FlexTensor,
    param: usize,
}

impl Backward<Flex, 1> for SavedBackward {
    type State = FlexTensor;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let saved = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            (self.backward)(saved, g, self.param)
        });
    }
}

/// `g ← kernel(g, saved, last axis length)`: the element- or row-wise backward of GELU and
/// softmax.
fn rowwise_grad(
    saved: FlexTensor,
    grad: FlexTensor,
    kernel: fn(&mut [f32], &[f32], usize),
) -> FlexTensor {
    let cols = last_dim(&saved);
    let saved = contiguous(saved);
    map_f32(grad, |g| kernel(g, &saved, cols))
}

/// Which tensor of a unary op its backward needs.
#[derive(Clone, Copy)]
enum Save {
    Input,
    Output,
}

/// `forward(x)` on the autodiff device, with `backward` on the saved tensor as its backward.
fn unary_op<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    forward: impl FnOnce(FlexTensor) -> FlexTensor,
    backward: SavedBackward,
    save: Save,
) -> FloatTensor<Autodiff<Flex, C>> {
    match backward.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let input = x.primitive().clone();
            match save {
                Save::Input => prep.finish(input.clone(), forward(input)),
                Save::Output => {
                    let y = forward(input);
                    prep.finish(y.clone(), y)
                }
            }
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive())),
    }
}

impl<C: CheckpointStrategy> TrainKernels for Autodiff<Flex, C> {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // d GELU/dx needs the input.
        let backward = SavedBackward {
            backward: |x, g, _| {
                rowwise_grad(x, g, |g, x, _| crate::cpu_kernels::gelu_grad_mul(g, x))
            },
            param: 0,
        };
        unary_op::<C>(x, Flex::gelu_erf, backward, Save::Input)
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // The softmax backward needs only the output.
        let backward = SavedBackward {
            backward: |y, g, _| rowwise_grad(y, g, crate::cpu_kernels::softmax_last_backward),
            param: 0,
        };
        unary_op::<C>(x, Flex::softmax_last, backward, Save::Output)
    }

    fn linear_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, w, b) = (x.into_primitive(), w.into_primitive(), b.into_primitive());
                let y = Flex::linear_bias(x.clone(), w.clone(), b);
                prep.finish((x, w), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::linear_bias(
                x.into_primitive(),
                w.into_primitive(),
                b.into_primitive(),
            )),
        }
    }

    fn attention_qkv(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        let backward = SavedBackward {
            backward: attention_grad,
            param: heads,
        };
        unary_op::<C>(
            qkv,
            |x| Flex::attention_qkv(x, heads),
            backward,
            Save::Input,
        )
    }

    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match (LayerNormBackward { eps })
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, g, b) = (
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                );
                let y = Flex::layer_norm_affine(x.clone(), g.clone(), b, eps);
                prep.finish((x, g), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::layer_norm_affine(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                eps,
            )),
        }
    }
}

/// LayerNorm `norm` (with a bias, epsilon `eps`: burn keeps its own private) over the last axis
/// of `x`: on the flex device (plain or autodiff), f32, one op with the vectorised kernel forward
/// and a hand-written backward ([`crate::cpu_kernels::layer_norm_backward`]) instead of burn's
/// composition of mean, variance, subtract, divide, scale and shift, each with its own backward;
/// burn's `LayerNorm::forward` elsewhere.
pub fn layer_norm<const D: usize>(norm: &burn::nn::LayerNorm, eps: f64, x: Tensor<D>) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(x);
    };
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return norm.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as TrainKernels>::layer_norm_affine(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        eps,
    ))
}

/// Multi-head self-attention `qkv [N, T, 3D]` → `[N, T, D]` on the flex device (plain or
/// autodiff), f32: one op whose forward is the inference kernel
/// ([`crate::cpu_kernels::attention_from_qkv`]) and whose backward recomputes the probabilities
/// per head ([`crate::cpu_kernels::attention_backward`]), instead of burn's head split/merge
/// copies, two batched matmuls, scale and softmax, each with its own backward and stored
/// `[N, H, T, T]` tensors. `None` off flex or for other dtypes.
pub fn attention_qkv(qkv: Tensor<3>, heads: usize) -> Option<Tensor<3>> {
    if !on_flex(&qkv.device()) || qkv.dtype() != DType::F32 {
        return None;
    }
    Some(Tensor::from_dispatch(
        <Dispatch as TrainKernels>::attention_qkv(qkv.into_dispatch(), heads),
    ))
}

/// A Linear layer on `x [M, K]`: with a bias, on the flex device (plain or autodiff) and f32, the
/// one-write GEMM above ([`TrainKernels::linear_bias`]) and its hand-written backward; burn's
/// `Linear::forward` otherwise.
pub fn linear(l: &burn::nn::Linear, x: Tensor<2>) -> Tensor<2> {
    let Some(b) = l.bias.as_ref() else {
        return l.forward(x);
    };
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return l.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as TrainKernels>::linear_bias(
        x.into_dispatch(),
        l.weight.val().into_dispatch(),
        b.val().into_dispatch(),
    ))
}

/// Exact GELU of `x`: the kernels above on the flex device (plain or autodiff) for f32, burn's
/// `activation::gelu` elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as TrainKernels>::gelu_erf(x.into_dispatch()))
}

/// Softmax over the last axis of `x`: the kernels above on the flex device (plain or autodiff)
/// for f32, burn's `activation::softmax` elsewhere.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x.device()) || x.dtype() != DType::F32 {
        return activation::softmax(x, D - 1);
    }
    Tensor::from_dispatch(<Dispatch as TrainKernels>::softmax_last(x.into_dispatch()))
}

/// Whether `device` is the flex CPU device, with or without autodiff.
pub fn on_flex(device: &Device) -> bool {
    *device == Device::flex() || *device == Device::flex().autodiff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// `max |p − q| / max |q|`: a difference relative to the reference's largest magnitude (our
    /// ops and burn's differ only in summation order).
    fn rel_diff<const D: usize>(p: Tensor<D>, q: Tensor<D>) -> f32 {
        let scale = q.clone().abs().max().into_scalar::<f32>();
        (p - q).abs().max().into_scalar::<f32>() / scale
    }

    /// Values and gradients of `sum(w ⊙ GELU(x))` equal burn's own GELU's (an independent
    /// implementation: libm `erff`), on the plain and the autodiff flex device.
    #[test]
    fn matches_burns_gelu_forward_and_backward() {
        let plain = Device::flex();
        let x = Tensor::<3>::random([3, 7, 50], Distribution::Normal(0.0, 2.0), &plain);
        let y = gelu(x.clone());
        let d = (y - activation::gelu(x.clone()))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d < 1e-6, "forward max diff {d:e}");

        let ad = plain.autodiff();
        let w = Tensor::<3>::random([3, 7, 50], Distribution::Normal(0.0, 1.0), &ad);
        let grad = |f: fn(Tensor<3>) -> Tensor<3>| {
            let x = Tensor::<3>::from_data(x.to_data(), &ad).require_grad();
            let grads = (f(x.clone()) * w.clone()).sum().backward();
            x.grad(&grads).expect("a gradient")
        };
        let ours = grad(gelu::<3>);
        let burns = grad(activation::gelu::<3>);
        let d = (ours - burns).abs().max().into_scalar::<f32>();
        assert!(d < 1e-5, "gradient max diff {d:e}");
    }

    /// The same for the softmax over the last axis, against burn's `activation::softmax`.
    #[test]
    fn matches_burns_softmax_forward_and_backward() {
        let plain = Device::flex();
        let x = Tensor::<4>::random([2, 3, 9, 41], Distribution::Normal(0.0, 3.0), &plain);
        let d = (softmax_last(x.clone()) - activation::softmax(x.clone(), 3))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(d < 1e-6, "forward max diff {d:e}");

        let ad = plain.autodiff();
        let w = Tensor::<4>::random([2, 3, 9, 41], Distribution::Normal(0.0, 1.0), &ad);
        let grad = |f: fn(Tensor<4>) -> Tensor<4>| {
            let x = Tensor::<4>::from_data(x.to_data(), &ad).require_grad();
            let grads = (f(x.clone()) * w.clone()).sum().backward();
            x.grad(&grads).expect("a gradient")
        };
        let ours = grad(softmax_last::<4>);
        let burns = grad(|x| activation::softmax(x, 3));
        let d = (ours - burns).abs().max().into_scalar::<f32>();
        assert!(d < 1e-6, "gradient max diff {d:e}");
    }

    /// The Linear op's output and its gradients for input, weight and bias equal burn's
    /// `Linear::forward` (matmul + broadcast add, burn's own autodiff), for a contiguous input
    /// and a transposed view, at sizes below and above the threaded-GEMM threshold.
    #[test]
    fn linear_matches_burns_forward_and_backward() {
        use burn::nn::LinearConfig;
        let ad = Device::flex().autodiff();
        for (m, k, n) in [(13, 7, 5), (300, 200, 160)] {
            let layer = LinearConfig::new(k, n).init(&ad);
            let w = Tensor::<2>::random([m, n], Distribution::Normal(0.0, 1.0), &ad);
            let x0 = Tensor::<2>::random([k, m], Distribution::Normal(0.0, 1.0), &ad);
            for transposed in [false, true] {
                let run = |ours: bool| {
                    let layer = layer.clone();
                    let x = Tensor::<2>::from_data(x0.to_data(), &ad).require_grad();
                    let xin = if transposed {
                        x.clone().transpose()
                    } else {
                        x.clone().reshape([m, k])
                    };
                    let y = if ours {
                        linear(&layer, xin)
                    } else {
                        layer.forward(xin)
                    };
                    let grads = (y.clone() * w.clone()).sum().backward();
                    let gw = layer.weight.val().grad(&grads).expect("weight grad");
                    let gb = layer
                        .bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .grad(&grads)
                        .expect("bias grad");
                    (y.inner(), x.grad(&grads).expect("input grad"), gw, gb)
                };
                let (a, b) = (run(true), run(false));
                let case = format!("({m},{k},{n}) transposed {transposed}");
                let r = [
                    rel_diff(a.0, b.0),
                    rel_diff(a.1, b.1),
                    rel_diff(a.2, b.2),
                    rel_diff(a.3, b.3),
                ];
                assert!(
                    r.iter().all(|&r| r < 1e-6),
                    "{case}: y, dx, dw, db rel diff {r:?}"
                );
            }
        }
    }

    /// The attention op's output and `qkv` gradient equal burn's composition of the same
    /// attention (head split, `q·kᵀ·s`, `activation::softmax`, `·v`, head merge) under burn's
    /// autodiff, for a short and a longer sequence.
    #[test]
    fn attention_matches_burns_composition_forward_and_backward() {
        let ad = Device::flex().autodiff();
        for (n, t, d, h) in [(2, 9, 12, 3), (3, 50, 64, 4)] {
            let qkv0 = Tensor::<3>::random([n, t, 3 * d], Distribution::Normal(0.0, 1.5), &ad);
            let w = Tensor::<3>::random([n, t, d], Distribution::Normal(0.0, 1.0), &ad);
            let burns = |qkv: Tensor<3>| {
                let qkv = qkv.reshape([n, t, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
                let part = |i: usize| qkv.clone().slice_dim(0, i..i + 1).reshape([n, h, t, d / h]);
                let s = part(0)
                    .matmul(part(1).swap_dims(2, 3))
                    .mul_scalar(((d / h) as f64).powf(-0.5));
                activation::softmax(s, 3)
                    .matmul(part(2))
                    .swap_dims(1, 2)
                    .reshape([n, t, d])
            };
            let run = |ours: bool| {
                let qkv = Tensor::<3>::from_data(qkv0.to_data(), &ad).require_grad();
                let y = if ours {
                    attention_qkv(qkv.clone(), h).expect("the flex device")
                } else {
                    burns(qkv.clone())
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                (y.inner(), qkv.grad(&grads).expect("a gradient"))
            };
            let (a, b) = (run(true), run(false));
            let r = [rel_diff(a.0, b.0), rel_diff(a.1, b.1)];
            assert!(
                r.iter().all(|&r| r < 1e-5),
                "({n},{t},{d},{h}): y, dqkv rel diff {r:?}"
            );
        }
    }

    /// The LayerNorm op's output and its gradients for input, weight and bias equal burn's
    /// `LayerNorm::forward` under burn's autodiff (eps 1e-6, non-trivial weight and bias).
    #[test]
    fn layer_norm_matches_burns_forward_and_backward() {
        use burn::module::Param;
        use burn::nn::LayerNormConfig;
        let ad = Device::flex().autodiff();
        let d = 40;
        let mut norm = LayerNormConfig::new(d).with_epsilon(1e-6).init(&ad);
        norm.gamma = Param::from_tensor(Tensor::random([d], Distribution::Normal(1.0, 0.5), &ad));
        norm.beta = Some(Param::from_tensor(Tensor::random(
            [d],
            Distribution::Normal(0.0, 0.5),
            &ad,
        )));
        // 5·70 = 350 rows: several 64-row blocks of the backward's parameter sums.
        let x0 = Tensor::<3>::random([5, 70, d], Distribution::Normal(0.3, 2.0), &ad);
        let w = Tensor::<3>::random([5, 70, d], Distribution::Normal(0.0, 1.0), &ad);
        let run = |ours: bool| {
            let norm = norm.clone();
            let x = Tensor::<3>::from_data(x0.to_data(), &ad).require_grad();
            let y = if ours {
                layer_norm(&norm, 1e-6, x.clone())
            } else {
                norm.forward(x.clone())
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let gg = norm.gamma.val().grad(&grads).expect("gamma grad");
            let gb = norm
                .beta
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads)
                .expect("beta grad");
            (y.inner(), x.grad(&grads).expect("input grad"), gg, gb)
        };
        let (a, b) = (run(true), run(false));
        let r = [
            rel_diff(a.0, b.0),
            rel_diff(a.1, b.1),
            rel_diff(a.2, b.2),
            rel_diff(a.3, b.3),
        ];
        assert!(
            r.iter().all(|&r| r < 1e-5),
            "y, dx, dgamma, dbeta rel diff {r:?}"
        );
    }
}

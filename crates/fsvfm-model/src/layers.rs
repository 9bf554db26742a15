//! timm building blocks with timm parameter names: `PatchEmbed`, `Attention`, `Mlp`, `Block`, and
//! the BYOL projector/predictor MLP of the official code.
//!
//! Initialisation follows the official `initialize_weights` (spec §1.1): every Linear xavier-uniform
//! with zero bias, LayerNorm weight 1 / bias 0, the patch-embedding convolution xavier-uniform on its
//! flattened `[D, C·p·p]` view. LayerNorm eps is 1e-6; GELU is the exact erf form.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData, activation};

/// LayerNorm eps of every official model (`partial(nn.LayerNorm, eps=1e-6)`).
pub const LN_EPS: f64 = 1e-6;

/// A `d_in → d_out` Linear, xavier-uniform weight and zero bias (official `_init_weights`).
pub fn xavier_linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    if bias {
        linear.bias = Some(Initializer::Zeros.init([d_out], device));
    }
    linear
}

/// LayerNorm with eps 1e-6, weight 1, bias 0.
pub fn layer_norm(d: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(LN_EPS).init(device)
}

/// A fixed (non-trainable) parameter holding `values` with `shape`.
pub(crate) fn fixed_param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(
        burn::tensor::TensorData::new(values, shape),
        device,
    ))
    .set_require_grad(false)
}

/// A trainable parameter drawn from N(0, std²) (the official `normal_(std=.02)` for tokens).
pub(crate) fn normal_param<const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, std),
        device,
    ))
}

/// Image to patch tokens: a `p×p`, stride-`p` convolution (`patch_embed.proj`).
///
/// `[N, C, H, W] → [N, L, D]`, L = (H/p)·(W/p), patches in row-major order.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// Conv weight `[D, C, p, p]`, bias `[D]`.
    pub proj: Conv2d,
}

impl PatchEmbed {
    /// A patch embedding with the official xavier init on the flattened kernel.
    pub fn new(in_chans: usize, embed_dim: usize, patch: usize, device: &Device) -> Self {
        let mut proj = Conv2dConfig::new([in_chans, embed_dim], [patch, patch])
            .with_stride([patch, patch])
            .init(device);
        // xavier_uniform on the [D, C·p·p] view: fan_in = C·p·p, fan_out = D.
        let fan_in = in_chans * patch * patch;
        let a = (6.0 / (fan_in + embed_dim) as f64).sqrt();
        proj.weight = Param::from_tensor(Tensor::random(
            [embed_dim, in_chans, patch, patch],
            Distribution::Uniform(-a, a),
            device,
        ));
        proj.bias = Some(Initializer::Zeros.init([embed_dim], device));
        Self { proj }
    }

    /// `[N, C, H, W] → [N, L, D]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let y = self.proj.forward(x); // [N, D, gh, gw]
        let [n, d, gh, gw] = y.dims();
        y.reshape([n, d, gh * gw]).swap_dims(1, 2)
    }
}

/// Multi-head self-attention with a fused `qkv` projection (timm `Attention`, `qkv_bias=True`).
///
/// The `qkv` weight rows are `[q; k; v]` with heads contiguous inside each (timm's `3, H, hd` reshape).
#[derive(Module, Debug)]
pub struct Attention {
    /// `D → 3D`.
    pub qkv: Linear,
    /// `D → D`.
    pub proj: Linear,
    num_heads: usize,
}

impl Attention {
    /// Xavier-initialised attention of width `dim` with `num_heads` heads.
    pub fn new(dim: usize, num_heads: usize, device: &Device) -> Self {
        Self {
            qkv: xavier_linear(dim, 3 * dim, true, device),
            proj: xavier_linear(dim, dim, true, device),
            num_heads,
        }
    }

    /// Attention probabilities `softmax(q·kᵀ · head_dim^-0.5)` per head: `[N, T, D] → [N, H, T, T]`
    /// (rows sum to 1). [`Self::forward`] is `proj(probs · v)`; this is for attention maps.
    pub fn probs(&self, x: Tensor<3>) -> Tensor<4> {
        let [n, t, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let qkv = linear3(&self.qkv, x)
            .reshape([n, t, 3, h, hd])
            .permute([2, 0, 3, 1, 4]); // [3, N, H, T, hd]
        let part = |i: usize| qkv.clone().slice_dim(0, i..i + 1).reshape([n, h, t, hd]);
        let scores = part(0)
            .matmul(part(1).swap_dims(2, 3))
            .mul_scalar((hd as f64).powf(-0.5));
        activation::softmax(scores, 3)
    }

    /// `[N, T, D] → [N, T, D]`, scale `head_dim^-0.5`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [n, t, d] = x.dims();
        let h = self.num_heads;
        let qkv = linear3(&self.qkv, x);
        // On flex one fused op with a hand-written backward (`train_ops::attention_qkv`);
        // elsewhere (CUDA) burn's attention.
        let out = match crate::train_ops::attention_qkv(qkv.clone(), h) {
            Some(out) => out,
            None => {
                let qkv = qkv.reshape([n, t, 3, h, d / h]).permute([2, 0, 3, 1, 4]); // [3, N, H, T, hd]
                let part = |i: usize| qkv.clone().slice_dim(0, i..i + 1).reshape([n, h, t, d / h]);
                attention(
                    part(0),
                    part(1),
                    part(2),
                    None,
                    None,
                    AttentionModuleOptions::default(),
                )
                .swap_dims(1, 2)
                .reshape([n, t, d])
            }
        };
        linear3(&self.proj, out)
    }
}

/// `fc1 → GELU(erf) → fc2` (timm `Mlp`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `D → hidden`.
    pub fc1: Linear,
    /// `hidden → D`.
    pub fc2: Linear,
}

impl Mlp {
    /// Xavier-initialised MLP.
    pub fn new(dim: usize, hidden: usize, device: &Device) -> Self {
        Self {
            fc1: xavier_linear(dim, hidden, true, device),
            fc2: xavier_linear(hidden, dim, true, device),
        }
    }

    /// `[N, T, D] → [N, T, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear3(&self.fc2, crate::train_ops::gelu(linear3(&self.fc1, x)))
    }
}

/// Pre-LN transformer block: `x += attn(norm1(x))`, `x += mlp(norm2(x))`, no layer scale.
#[derive(Module, Debug)]
pub struct Block {
    /// LayerNorm before attention.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// LayerNorm before the MLP.
    pub norm2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    drop_path: f64,
}

impl Block {
    /// A block of width `dim` (MLP hidden `hidden`), with stochastic depth `drop_path`.
    pub fn new(
        dim: usize,
        num_heads: usize,
        hidden: usize,
        drop_path: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: layer_norm(dim, device),
            attn: Attention::new(dim, num_heads, device),
            norm2: layer_norm(dim, device),
            mlp: Mlp::new(dim, hidden, device),
            drop_path,
        }
    }

    /// This block's stochastic-depth rate.
    pub fn drop_path(&self) -> f64 {
        self.drop_path
    }

    /// `[N, T, D] → [N, T, D]`. Off autodiff devices (inference) the whole block runs in the
    /// fused CPU kernels of [`crate::cpu_kernels`] (drop path is the identity there anyway).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if use_cpu_kernels(&x.device()) {
            return run_blocks(std::slice::from_ref(self), x);
        }
        let norm = |n: &LayerNorm, x: Tensor<3>| crate::train_ops::layer_norm(n, LN_EPS, x);
        let x = x.clone() + drop_path(self.attn.forward(norm(&self.norm1, x)), self.drop_path);
        x.clone() + drop_path(self.mlp.forward(norm(&self.norm2, x)), self.drop_path)
    }
}

/// Whether `device` takes the fused CPU inference kernels: the flex CPU device without autodiff
/// (training, and other backends such as CUDA, keep burn's ops).
pub fn use_cpu_kernels(device: &Device) -> bool {
    !device.is_autodiff() && crate::train_ops::on_flex(device)
}

/// A Linear on `[N, T, D]` as one `[N·T, D]` GEMM, so the weight is packed once per call instead
/// of once per sample (`cpu-perf.md` §4).
pub fn linear3(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [n, t, d] = x.dims();
    let y = crate::train_ops::linear(linear, x.reshape([n * t, d]));
    let o = y.dims()[1];
    y.reshape([n, t, o])
}

/// The values of an f32 tensor on the host (the buffer is moved out when the tensor owns it alone).
pub fn host_f32<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    if x.device() == burn::tensor::Device::flex() && x.dtype() == burn::tensor::DType::F32 {
        let t = x
            .try_into_primitive::<burn::backend::Flex>()
            .expect("a tensor on the plain flex device has a flex primitive");
        return crate::train_ops::flex_values(t);
    }
    x.into_data()
        .try_into_vec::<f32>()
        .expect("fsvfm models compute in f32")
}

/// A parameter for the kernels: a view of its flex storage when it is a contiguous f32 flex
/// tensor (no copy), else a host copy.
pub fn host_param<const D: usize>(x: Tensor<D>) -> crate::cpu_kernels::HostBuf {
    match x.clone().try_into_primitive::<burn::backend::Flex>() {
        Ok(t) => crate::train_ops::contiguous(t),
        Err(_) => host_f32(x).into(),
    }
}

/// A `[len]` tensor on `device` owning `v` (no copy on flex).
pub fn host_tensor(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// `f` applied in place to the host values of `t` (taken over without a copy when `t` is a flex
/// tensor that owns its storage alone), as a new tensor on `t`'s device.
pub fn map_host(t: Tensor<1>, f: impl FnOnce(&mut [f32])) -> Tensor<1> {
    let device = t.device();
    let mut v = host_f32(t);
    f(&mut v);
    host_tensor(v, &device)
}

type HostPair = (
    crate::cpu_kernels::HostBuf,
    Option<crate::cpu_kernels::HostBuf>,
);

fn host_linear(l: &Linear) -> HostPair {
    (
        host_param(l.weight.val()),
        l.bias.as_ref().map(|b| host_param(b.val())),
    )
}

fn host_norm(l: &LayerNorm) -> HostPair {
    (
        host_param(l.gamma.val()),
        l.beta.as_ref().map(|b| host_param(b.val())),
    )
}

impl Block {
    /// Host copies of the parameters, for [`crate::cpu_kernels::block_forward`].
    pub fn host(&self) -> crate::cpu_kernels::HostBlock {
        let dim = self.norm1.gamma.val().dims()[0];
        crate::cpu_kernels::HostBlock {
            dim,
            heads: self.attn.num_heads,
            hidden: self.mlp.fc1.weight.val().dims()[1],
            // Every block norm is built by `layer_norm` (eps 1e-6; burn keeps eps private).
            eps: LN_EPS as f32,
            norm1: host_norm(&self.norm1),
            qkv: host_linear(&self.attn.qkv),
            proj: host_linear(&self.attn.proj),
            norm2: host_norm(&self.norm2),
            fc1: host_linear(&self.mlp.fc1),
            fc2: host_linear(&self.mlp.fc2),
            packed: None,
        }
    }

    /// The host block for a forward. In bf16 under [`crate::cpu_kernels::set_frozen_weights`],
    /// packed once per block and kept (the packs replace the fp32 copies: half their size);
    /// otherwise copied now and dropped after the block (an fp32 cache would hold a second copy
    /// of every weight for ~6 % of speed).
    fn host_for_forward(&self) -> std::sync::Arc<crate::cpu_kernels::HostBlock> {
        use crate::cpu_kernels::{Precision, frozen_weights, precision};
        if !frozen_weights() || precision() != Precision::Bf16 {
            return std::sync::Arc::new(self.host());
        }
        type Cache = std::collections::HashMap<
            burn::module::ParamId,
            std::sync::Arc<crate::cpu_kernels::HostBlock>,
        >;
        static CACHE: std::sync::OnceLock<std::sync::Mutex<Cache>> = std::sync::OnceLock::new();
        // The qkv weight's id names the block: ids are unique per parameter of a process.
        let key = self.attn.qkv.weight.id;
        let cache = CACHE.get_or_init(Default::default);
        if let Some(h) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return h.clone();
        }
        let mut h = self.host();
        h.pack_bf16();
        let h = std::sync::Arc::new(h);
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, h.clone());
        h
    }
}

/// Runs `x` through `blocks` in order. Off autodiff devices the activations stay in one host
/// buffer across all blocks (one copy in, one out).
pub fn run_blocks(blocks: &[Block], x: Tensor<3>) -> Tensor<3> {
    use crate::cpu_kernels::{block_forward, with_scratch};
    let device = x.device();
    if !use_cpu_kernels(&device) || blocks.is_empty() {
        return blocks.iter().fold(x, |x, b| b.forward(x));
    }
    let [n, t, d] = x.dims();
    let mut v = host_f32(x);
    let hosts: Vec<_> = blocks.iter().map(Block::host_for_forward).collect();
    let threads = rayon::current_num_threads();
    let amx = crate::cpu_kernels::precision() == crate::cpu_kernels::Precision::Bf16
        && crate::amx::available();
    if amx && n > 1 {
        // On AMX the GEMMs outrun memory: one sample at a time through every block keeps a
        // sample's activations in L2 (`BENCHMARKS.md`: batch 8 ran slower per image than
        // batch 1 with the whole batch per block).
        let parts: Vec<&mut [f32]> = v.chunks_mut(t * d).collect();
        crate::cpu_kernels::split_batch(parts, |x| {
            with_scratch(|s| hosts.iter().for_each(|h| block_forward(x, 1, t, h, s)))
        });
    } else if threads > 1 && n >= threads && n.is_multiple_of(threads) {
        // Equal shares of the batch, one per thread, each through every block.
        let share = n / threads;
        let parts: Vec<&mut [f32]> = v.chunks_mut(share * t * d).collect();
        crate::cpu_kernels::split_batch(parts, |x| {
            with_scratch(|s| hosts.iter().for_each(|h| block_forward(x, share, t, h, s)))
        });
    } else {
        with_scratch(|s| hosts.iter().for_each(|h| block_forward(&mut v, n, t, h, s)));
    }
    Tensor::from_data(TensorData::new(v, [n, t, d]), &device)
}

/// Stochastic depth (timm `drop_path`): zero a residual branch per sample with probability `p`,
/// rescaling the kept ones by `1/(1−p)`. Identity for `p = 0` or off an autodiff device
/// (inference), as burn's `Dropout`.
pub fn drop_path(x: Tensor<3>, p: f64) -> Tensor<3> {
    if p <= 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let keep = 1.0 - p;
    let [n, _, _] = x.dims();
    let mask = Tensor::<3>::random([n, 1, 1], Distribution::Bernoulli(keep), &x.device());
    x * mask.div_scalar(keep)
}

/// One parameterised layer of the official `nn.Sequential` projection head; the enum variant is
/// skipped in parameter paths, so the Vec index is the Sequential index.
#[derive(Module, Debug)]
pub enum HeadLayer {
    /// `nn.Linear`.
    Linear(Linear),
    /// `nn.LayerNorm` (default eps 1e-5: the official head uses the plain `nn.LayerNorm`).
    Norm(LayerNorm),
    /// `nn.ReLU` (no parameters; keeps index 2 free so the last Linear is index 3).
    Relu(Relu),
}

/// BYOL projector / predictor: `Linear(d, hidden) → LayerNorm(hidden) → ReLU → Linear(hidden, out)`,
/// keys `projection_head.{0,1,3}.*` (spec §1.3).
#[derive(Module, Debug)]
pub struct ByolMlp {
    /// The four Sequential entries.
    pub projection_head: Vec<HeadLayer>,
}

impl ByolMlp {
    /// Xavier-initialised head (the official `self.apply(_init_weights)` overrides BYOL's Kaiming init).
    pub fn new(dim: usize, out: usize, hidden: usize, device: &Device) -> Self {
        Self {
            projection_head: vec![
                HeadLayer::Linear(xavier_linear(dim, hidden, true, device)),
                HeadLayer::Norm(LayerNormConfig::new(hidden).init(device)),
                HeadLayer::Relu(Relu),
                HeadLayer::Linear(xavier_linear(hidden, out, true, device)),
            ],
        }
    }

    /// `[N, dim] → [N, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.projection_head.iter().fold(x, |x, layer| match layer {
            HeadLayer::Linear(l) => l.forward(x),
            HeadLayer::Norm(n) => n.forward(x),
            HeadLayer::Relu(r) => r.forward(x),
        })
    }
}

/// L2-normalise the rows of `[N, C]` (`F.normalize(x, dim=-1)`, eps 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    // max(‖x‖, 1e-12) as F.normalize, written as sqrt(max(‖x‖², 1e-24)): the same values, but an
    // all-zero row (a bottleneck whose ReLUs are all off) gets a zero gradient instead of
    // sqrt'(0) · 0 = NaN.
    let norm = x.clone().square().sum_dim(1).clamp_min(1e-24).sqrt();
    x / norm
}

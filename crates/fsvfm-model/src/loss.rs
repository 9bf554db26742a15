//! The pre-training losses of the official `forward_loss` and `SimSiamLoss` (spec §3).

use burn::tensor::Tensor;

/// `[N, C, H, W] → [N, L, p·p·C]`, values ordered (p, q, c) inside each patch
/// (einsum `nchpwq → nhwpqc`), patches row-major.
pub fn patchify(imgs: Tensor<4>, p: usize) -> Tensor<3> {
    let [n, c, h, w] = imgs.dims();
    let (gh, gw) = (h / p, w / p);
    imgs.reshape([n, c, gh, p, gw, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([n, gh * gw, p * p * c])
}

/// Inverse of [`patchify`] for square images: `[N, L, p·p·C] → [N, C, H, W]`.
pub fn unpatchify(x: Tensor<3>, p: usize, c: usize) -> Tensor<4> {
    let [n, l, _] = x.dims();
    let g = (l as f64).sqrt().round() as usize;
    x.reshape([n, g, g, p, p, c])
        .permute([0, 5, 1, 3, 2, 4])
        .reshape([n, c, g * p, g * p])
}

/// Per-patch squared error `[N, L]` = mean over the patch's values of `(pred − target)²`, the target
/// normalised per patch (`(t − mean)/sqrt(var + 1e-6)`, unbiased var) when `norm_pix`.
pub fn patch_errors(imgs: Tensor<4>, pred: Tensor<3>, patch: usize, norm_pix: bool) -> Tensor<2> {
    let mut target = patchify(imgs, patch);
    if norm_pix {
        let mean = target.clone().mean_dim(2);
        let var = target.clone().var(2);
        target = (target - mean) / (var + 1e-6).sqrt();
    }
    let [n, l, _] = pred.dims();
    (pred - target).square().mean_dim(2).reshape([n, l])
}

/// `Σ w·e / Σ w` over the whole batch (the official batch-level normalisation), and 0 where
/// `Σ w = 0` instead of the official 0/0 = NaN (a region absent from the whole batch).
pub fn masked_mean(errors: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    let den = weights.clone().sum();
    let num = (errors * weights).sum();
    // den ≥ 0; max(den, 1) only changes the den = 0 case, where num is 0 too.
    num / den.clamp_min(1.0)
}

/// SimSiam-style similarity loss `−½ · mean_n cos(p_n, z_n)`, range [−0.5, 0.5]
/// (`F.cosine_similarity`, eps 1e-8). `z` should come from the target network (no gradient).
pub fn sim_loss(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    let dot = (p.clone() * z.clone()).sum_dim(1);
    let np = p.square().sum_dim(1).sqrt();
    let nz = z.square().sum_dim(1).sqrt();
    (dot / (np * nz).clamp_min(1e-8)).mean().mul_scalar(-0.5)
}

/// The three pre-training losses and their weighted total
/// `L = L_rec^m + w_fr · L_rec^fr + w_sim · L_sim` (0.007 and 0.1 in every recipe).
#[derive(Debug, Clone)]
pub struct PretrainLosses {
    /// Reconstruction error over all masked patches.
    pub rec_masked: Tensor<1>,
    /// Reconstruction error over the fully covered facial region (0 when the region is absent).
    pub rec_region: Tensor<1>,
    /// `−½ cos(p, z)`.
    pub sim: Tensor<1>,
    /// The weighted sum.
    pub total: Tensor<1>,
}

/// Weights of the official recipe: `--weight_sfr 0.007`, `--weight_cl 0.1`.
pub const WEIGHT_REGION: f64 = 0.007;
/// See [`WEIGHT_REGION`].
pub const WEIGHT_SIM: f64 = 0.1;

/// The weights `w_fr`, `w_sim` of the total loss. [`Default`] is the official recipe
/// ([`WEIGHT_REGION`], [`WEIGHT_SIM`]); `{0, 0}` with random masking is plain MAE (the ablation
/// baseline of `fsvfm demo`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Weight of the covered-region reconstruction `L_rec^fr`.
    pub region: f64,
    /// Weight of the instance-discrimination loss `L_sim`.
    pub sim: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            region: WEIGHT_REGION,
            sim: WEIGHT_SIM,
        }
    }
}

/// All losses of one pre-training step, with the official weights.
///
/// `imgs [N, C, H, W]`, `pred [N, L, p·p·C]`, `mask` and `region` `[N, L]` (1 = masked / in the
/// covered region), `p` from the online and `z` from the target network `[N, P]`.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_losses(
    imgs: Tensor<4>,
    pred: Tensor<3>,
    mask: Tensor<2>,
    region: Tensor<2>,
    p: Tensor<2>,
    z: Tensor<2>,
    patch: usize,
    norm_pix: bool,
) -> PretrainLosses {
    pretrain_losses_weighted(
        imgs,
        pred,
        mask,
        region,
        p,
        z,
        patch,
        norm_pix,
        LossWeights::default(),
    )
}

/// [`pretrain_losses`] with other weights of the two auxiliary terms.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_losses_weighted(
    imgs: Tensor<4>,
    pred: Tensor<3>,
    mask: Tensor<2>,
    region: Tensor<2>,
    p: Tensor<2>,
    z: Tensor<2>,
    patch: usize,
    norm_pix: bool,
    weights: LossWeights,
) -> PretrainLosses {
    let e = patch_errors(imgs, pred, patch, norm_pix);
    let rec_masked = masked_mean(e.clone(), mask);
    let rec_region = masked_mean(e, region);
    let sim = sim_loss(p, z);
    let total = rec_masked.clone()
        + rec_region.clone().mul_scalar(weights.region)
        + sim.clone().mul_scalar(weights.sim);
    PretrainLosses {
        rec_masked,
        rec_region,
        sim,
        total,
    }
}

/// Cross-entropy with label smoothing (timm `LabelSmoothingCrossEntropy`):
/// `(1 − ε)·(−log p_y) + ε·mean_c(−log p_c)`, averaged over the batch. `logits [N, C]`, `targets`
/// class indices.
pub fn smoothed_cross_entropy(logits: Tensor<2>, targets: &[usize], smoothing: f64) -> Tensor<1> {
    let [n, c] = logits.dims();
    let device = logits.device();
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    let mut onehot = vec![0.0f32; n * c];
    for (i, &t) in targets.iter().enumerate() {
        onehot[i * c + t] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(burn::tensor::TensorData::new(onehot, [n, c]), &device);
    let nll = (logp.clone() * onehot).sum_dim(1).neg(); // [N, 1]
    let smooth = logp.mean_dim(1).neg();
    (nll.mul_scalar(1.0 - smoothing) + smooth.mul_scalar(smoothing)).mean()
}

/// timm `SoftTargetCrossEntropy`: `mean_i Σ_c −t_ic · log softmax(x_i)_c` for soft targets
/// `targets [N, C]` row-major (Mixup/CutMix targets, or smoothed one-hot rows, which gives
/// [`smoothed_cross_entropy`]). `logits [N, C]`.
pub fn soft_target_cross_entropy(logits: Tensor<2>, targets: &[f32]) -> Tensor<1> {
    let [n, c] = logits.dims();
    let device = logits.device();
    let t = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(targets.to_vec(), [n, c]),
        &device,
    );
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    (logp * t).sum_dim(1).neg().mean()
}

/// The Real-Anchor Contrastive loss of the FS-Adapter (spec §7, `RealAnchorConLoss`): SupCon with
/// one view at temperature `tau` whose positives are real–real pairs only. `c [B, P]` are the
/// L2-normalised projections, `is_real[i]` marks real samples. With no real sample in the batch the
/// loss is the constant 1e-6, as the official code returns.
pub fn real_anchor_con_loss(c: Tensor<2>, is_real: &[bool], tau: f64) -> Tensor<1> {
    let [b, _] = c.dims();
    let device = c.device();
    if !is_real.iter().any(|&r| r) {
        return Tensor::<1>::from_data(burn::tensor::TensorData::new(vec![1e-6f32], [1]), &device);
    }
    let s = c.clone().matmul(c.transpose()).div_scalar(tau); // [B, B]
    let logits = s.clone() - s.max_dim(1).detach();
    let mut off_diag = vec![1.0f32; b * b];
    let mut pos = vec![0.0f32; b * b];
    for i in 0..b {
        off_diag[i * b + i] = 0.0;
        for j in 0..b {
            if i != j && is_real[i] && is_real[j] {
                pos[i * b + j] = 1.0;
            }
        }
    }
    let counts: Vec<f32> = pos
        .chunks(b)
        .map(|r| r.iter().sum::<f32>().max(1.0))
        .collect();
    let t = |v: Vec<f32>, shape: [usize; 2]| {
        Tensor::<2>::from_data(burn::tensor::TensorData::new(v, shape), &device)
    };
    let off_diag = t(off_diag, [b, b]);
    let denom = (logits.clone().exp() * off_diag)
        .sum_dim(1)
        .add_scalar(1e-6)
        .log(); // [B, 1]
    let log_prob = logits - denom;
    let mean_pos = (log_prob * t(pos, [b, b])).sum_dim(1) / t(counts, [b, 1]);
    mean_pos.neg().mean()
}

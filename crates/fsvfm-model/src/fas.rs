//! The face anti-spoofing classifier of the official FAS fine-tuning (spec §6.3,
//! `cross_domain_FAS/fas.py`, derived from few_shot_fas / FLIP), with its parameter names
//! (`backbone.vit.*`, `embedder.bottleneck_layer_fc.*`, `classifier.classifier_layer.*`), so the
//! official `.pth.tar` checkpoints load as they are.
//!
//! 1. Backbone: the mean-pooled ViT's tokens `[N, T, D]` with token 0 replaced by
//!    `fc_norm(mean of the patch tokens)` (the official `forward_features` of `models_vit.py`).
//! 2. Embedder: `Linear(D, 512)` (init N(0, 0.005), bias 0.1) → ReLU → Dropout(0.5), then
//!    `f / (sqrt(‖f‖₂) · sqrt(2))`.
//! 3. Classifier: `Linear(512, 2)` (init N(0, 0.01), bias 0) whose weight is L2-normalised over
//!    the output axis (for every input dimension, across the two class rows) before each use;
//!    the official code does it in place (`weight.data = l2_norm(weight, axis=0)`).
//! 4. The logits of token 0 are the prediction (CE on `out[:, 0, :]`); class 1 = real.
//!
//! **The token-axis quirk.** The official embedder runs on the whole `[N, T, 512]` token tensor
//! and takes the norm over `dim=1`, which is the *token* axis there: each channel of a sample is
//! divided by a norm across that sample's tokens, not by the norm of the sample's feature
//! vector. [`FasNorm::TokenAxis`] reproduces this exactly (for running official checkpoints as
//! trained); the default [`FasNorm::PerSample`] normalises the pooled token's 512-d feature by
//! its own norm, which is what the formula intends and what the FS-Adapter variant of the code
//! does (its features are `[N, 2D]`).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, activation};

use crate::layers::{normal_param, xavier_linear};
use crate::vit::VisionTransformer;

/// Width of the FAS embedding.
pub const FAS_EMBED_DIM: usize = 512;

/// Which norm the embedder divides by (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FasNorm {
    /// Per sample, over the 512 features of the pooled token (default).
    PerSample,
    /// Over the token axis, as the official code computes it.
    TokenAxis,
}

/// The official `feature_generator`: holds the ViT as `vit`.
#[derive(Module, Debug)]
pub struct FeatureGenerator {
    /// Mean-pooled ViT without a head.
    pub vit: VisionTransformer,
}

/// The official `feature_embedder`.
#[derive(Module, Debug)]
pub struct FeatureEmbedder {
    /// `Linear(D, 512)`.
    pub bottleneck_layer_fc: Linear,
}

/// The official `classifier`.
#[derive(Module, Debug)]
pub struct FasHead {
    /// `Linear(512, 2)`, weight normalised over the class axis before use.
    pub classifier_layer: Linear,
}

/// The FAS classifier (`fas_model_fix`).
#[derive(Module, Debug)]
pub struct FasClassifier {
    /// Backbone.
    pub backbone: FeatureGenerator,
    /// Embedder.
    pub embedder: FeatureEmbedder,
    /// Classifier.
    pub classifier: FasHead,
    /// The embedder's normalisation is the official token-axis one ([`FasNorm::TokenAxis`]).
    pub token_axis_norm: bool,
    /// Dropout after the embedder's ReLU (0.5 officially; active on autodiff devices only).
    pub dropout: f64,
}

/// Burn's Linear weight `[512, 2]` with each row (one input dimension, across the two classes)
/// L2-normalised: torch's `l2_norm(weight [2, 512], axis=0)`.
pub fn normalize_class_axis(w: Tensor<2>) -> Tensor<2> {
    let norm = w.clone().square().sum_dim(1).sqrt();
    w / norm
}

fn dropout<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    if p <= 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let keep = 1.0 - p;
    let mask = Tensor::<D>::random(x.dims(), Distribution::Bernoulli(keep), &x.device());
    x * mask.div_scalar(keep)
}

impl FasClassifier {
    /// Wraps `vit` (mean-pooled, `fc_norm`, no head) with a fresh embedder and classifier drawn
    /// from `device`'s generator with the official initialisation.
    pub fn new(vit: VisionTransformer, norm: FasNorm, device: &Device) -> Self {
        let d = vit.cls_token.val().dims()[2];
        let mut fc = xavier_linear(d, FAS_EMBED_DIM, true, device);
        fc.weight = normal_param([d, FAS_EMBED_DIM], 0.005, device);
        fc.bias = Some(burn::module::Param::from_tensor(Tensor::full(
            [FAS_EMBED_DIM],
            0.1,
            device,
        )));
        let mut cls = xavier_linear(FAS_EMBED_DIM, 2, true, device);
        cls.weight = normal_param([FAS_EMBED_DIM, 2], 0.01, device);
        Self {
            backbone: FeatureGenerator { vit },
            embedder: FeatureEmbedder {
                bottleneck_layer_fc: fc,
            },
            classifier: FasHead {
                classifier_layer: cls,
            },
            token_axis_norm: norm == FasNorm::TokenAxis,
            dropout: 0.5,
        }
    }

    /// The embedder's normalisation.
    pub fn norm(&self) -> FasNorm {
        if self.token_axis_norm {
            FasNorm::TokenAxis
        } else {
            FasNorm::PerSample
        }
    }

    /// The backbone's tokens `[N, T, D]` with token 0 = `fc_norm(mean of patch tokens)`.
    pub fn tokens(&self, x: Tensor<4>) -> Tensor<3> {
        let vit = &self.backbone.vit;
        let t = vit.forward_tokens(x);
        let [n, len, d] = t.dims();
        let pooled = vit.pool(t.clone()).reshape([n, 1, d]);
        Tensor::cat(vec![pooled, t.slice([0..n, 1..len, 0..d])], 1)
    }

    /// The normalised 512-d embedding of token 0, `[N, 512]`.
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        let fc = &self.embedder.bottleneck_layer_fc;
        let scale = |norm: Tensor<2>| {
            norm.clamp_min(1e-12)
                .sqrt()
                .mul_scalar(std::f64::consts::SQRT_2)
        };
        match self.norm() {
            FasNorm::PerSample => {
                let n = x.dims()[0];
                let pooled = self.tokens(x).slice([0..n, 0..1]).squeeze_dim::<2>(1);
                let f = dropout(activation::relu(fc.forward(pooled)), self.dropout);
                let norm = f.clone().square().sum_dim(1).sqrt();
                f / scale(norm)
            }
            FasNorm::TokenAxis => {
                let f = dropout(activation::relu(fc.forward(self.tokens(x))), self.dropout);
                let [n, _, e] = f.dims();
                let norm = f.clone().square().sum_dim(1).sqrt().reshape([n, e]); // [N, 512]
                let f0 = f.slice([0..n, 0..1]).reshape([n, e]);
                f0 / scale(norm)
            }
        }
    }

    /// Logits `[N, 2]` (class 1 = real) of embeddings `[N, 512]`. With `weight_normalized` the
    /// classifier weight is used as stored (the trainer has just normalised it in place, as the
    /// official forward does); otherwise it is normalised here (inference from any checkpoint).
    pub fn classify(&self, f: Tensor<2>, weight_normalized: bool) -> Tensor<2> {
        let layer = &self.classifier.classifier_layer;
        let w = layer.weight.val();
        let w = if weight_normalized {
            w
        } else {
            normalize_class_axis(w)
        };
        let out = f.matmul(w);
        match &layer.bias {
            Some(b) => out + b.val().unsqueeze(),
            None => out,
        }
    }

    /// `[N, 3, H, W] → [N, 2]` logits (class 0 = attack, 1 = real), for inference.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify(self.embed(x), false)
    }
}

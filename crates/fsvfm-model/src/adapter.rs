//! FS-Adapter classifier (spec §7, `models_vit_fs_adapter.py`).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, activation};

use crate::config::AdapterConfig;
use crate::layers::{
    Block, PatchEmbed, fixed_param, l2_normalize, layer_norm, normal_param, run_blocks,
    xavier_linear,
};
use crate::pos_embed::sincos_2d;
use crate::vit::{block_attention, cls_attention, cls_with_pos, encoder_tokens};

/// The bottleneck: `b = ReLU(linear1 h)` (`D → D/r`, no bias), `u = ReLU(linear2 b)` (`D/r → D`, no bias).
#[derive(Module, Debug)]
pub struct Adapter {
    /// `D → D/r`, no bias.
    pub linear1: Linear,
    /// `D/r → D`, no bias.
    pub linear2: Linear,
}

impl Adapter {
    /// `[N, D] → (u [N, D], b [N, D/r])`.
    pub fn forward(&self, h: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let b = activation::relu(self.linear1.forward(h));
        let u = activation::relu(self.linear2.forward(b.clone()));
        (u, b)
    }
}

/// Outputs of [`FsAdapterClassifier::forward`].
#[derive(Debug, Clone)]
pub struct AdapterOutput {
    /// Logits `[N, num_classes]` from `head(concat[h, u])`.
    pub logits: Tensor<2>,
    /// L2-normalised projected bottleneck `[N, D/r]`, the input of the Real-Anchor Contrastive loss.
    pub contrastive: Tensor<2>,
}

/// Frozen mean-pooled ViT + FS-Adapter + projector + head, with the official keys: the backbone
/// (`cls_token, pos_embed, patch_embed, blocks, fc_norm`), `adapter.linear{1,2}.weight`,
/// `projector.{weight,bias}`, `head.{weight [C, 2D], bias}`.
#[derive(Module, Debug)]
pub struct FsAdapterClassifier {
    /// Class token `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// Position embedding `[1, 1 + L, D]`.
    pub pos_embed: Param<Tensor<3>>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Transformer blocks.
    pub blocks: Vec<Block>,
    /// Norm after mean pooling (stays at its identity init when only the adapter is trained).
    pub fc_norm: LayerNorm,
    /// The bottleneck adapter.
    pub adapter: Adapter,
    /// `D/r → D/r` projector for the contrastive loss.
    pub projector: Linear,
    /// `2D → num_classes` classifier.
    pub head: Linear,
}

impl FsAdapterClassifier {
    /// A freshly initialised model (PyTorch's default Linear init is replaced by xavier; the
    /// official adapter layers are never trained from a checkpoint, so only their shapes matter).
    ///
    /// The config must be valid ([`AdapterConfig::validate`]).
    pub fn new(cfg: &AdapterConfig, device: &Device) -> Self {
        let v = &cfg.backbone;
        let (d, b, g) = (v.embed_dim, cfg.bottleneck(), v.grid_size());
        Self {
            cls_token: normal_param([1, 1, d], 0.02, device),
            pos_embed: fixed_param(sincos_2d(d, g, g, true), [1, g * g + 1, d], device)
                .set_require_grad(true),
            patch_embed: PatchEmbed::new(v.in_chans, d, v.patch_size, device),
            blocks: v
                .drop_path_rates()
                .into_iter()
                .map(|dp| Block::new(d, v.num_heads, v.mlp_hidden(), dp, device))
                .collect(),
            fc_norm: layer_norm(d, device),
            adapter: Adapter {
                linear1: xavier_linear(d, b, false, device),
                linear2: xavier_linear(b, d, false, device),
            },
            projector: xavier_linear(b, b, true, device),
            head: xavier_linear(2 * d, v.num_classes, true, device),
        }
    }

    /// Pooled backbone feature `h = fc_norm(mean of patch tokens)`: `[N, C, H, W] → [N, D]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let n = x.dims()[0];
        let pos = self.pos_embed.val();
        let patches = encoder_tokens(&self.patch_embed, &pos, x);
        let cls = cls_with_pos(&self.cls_token.val(), &pos, n);
        let tokens = run_blocks(&self.blocks, Tensor::cat(vec![cls, patches], 1));
        let [n, t, d] = tokens.dims();
        self.fc_norm
            .forward(tokens.slice([0..n, 1..t, 0..d]).mean_dim(1).reshape([n, d]))
    }

    /// Adapter, projector and head on pooled features `h [N, D]`.
    pub fn forward_head(&self, h: Tensor<2>) -> AdapterOutput {
        let (u, b) = self.adapter.forward(h.clone());
        AdapterOutput {
            logits: self.head.forward(Tensor::cat(vec![h, u], 1)),
            contrastive: l2_normalize(self.projector.forward(b)),
        }
    }

    /// `[N, C, H, W] →` logits and contrastive features.
    pub fn forward(&self, x: Tensor<4>) -> AdapterOutput {
        self.forward_head(self.forward_features(x))
    }

    /// Last-block class-token attention of the frozen backbone, head-averaged:
    /// `[N, C, H, W] → [N, L]` (heat maps; see `crate::vit::cls_attention`).
    pub fn last_attention(&self, x: Tensor<4>) -> Tensor<2> {
        cls_attention(
            &self.patch_embed,
            &self.pos_embed.val(),
            &self.cls_token.val(),
            &self.blocks,
            x,
        )
    }

    /// Every block's attention probabilities of the frozen backbone: `[N, C, H, W] →` `depth`
    /// tensors `[N, heads, T, T]` (see [`crate::VisionTransformer::attention_probs`]).
    pub fn attention_probs(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        block_attention(
            &self.patch_embed,
            &self.pos_embed.val(),
            &self.cls_token.val(),
            &self.blocks,
            x,
        )
    }

    /// Parameters trained by `--trainable_modules fs-adapter`: adapter, projector and head.
    pub fn trainable_param_count(&self) -> usize {
        self.adapter.num_params() + self.projector.num_params() + self.head.num_params()
    }
}

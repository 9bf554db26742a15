//! The ViT classifier used downstream (spec §6.0: `models_vit.VisionTransformer`, timm naming).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};

use crate::config::VitConfig;
use crate::layers::{
    Block, PatchEmbed, fixed_param, layer_norm, normal_param, run_blocks, xavier_linear,
};
use crate::pos_embed::sincos_2d;

/// The encoder pieces every model shares, with their official names (`cls_token`, `pos_embed`,
/// `patch_embed`, `blocks`). Kept as free functions over the fields, because the official
/// checkpoints store them at the top level of each model rather than under an `encoder.` prefix.
pub(crate) fn encoder_tokens(
    patch_embed: &PatchEmbed,
    pos_embed: &Tensor<3>,
    x: Tensor<4>,
) -> Tensor<3> {
    let tokens = patch_embed.forward(x); // [N, L, D]
    let [_, l, d] = tokens.dims();
    tokens + pos_embed.clone().slice([0..1, 1..l + 1, 0..d])
}

/// `cls_token + pos_embed[:, :1]`, expanded to `[N, 1, D]`.
pub(crate) fn cls_with_pos(cls_token: &Tensor<3>, pos_embed: &Tensor<3>, n: usize) -> Tensor<3> {
    let [_, _, d] = cls_token.dims();
    (cls_token.clone() + pos_embed.clone().slice([0..1, 0..1, 0..d])).repeat_dim(0, n)
}

/// The last block's attention from the class token to every patch, averaged over heads (the
/// papers' Fig. 5 maps): `[N, C, H, W] → [N, L]`, patches in raster order. Each row sums to
/// `1 − p_cls`, where `p_cls` is the class token's attention to itself.
pub(crate) fn cls_attention(
    patch_embed: &PatchEmbed,
    pos_embed: &Tensor<3>,
    cls_token: &Tensor<3>,
    blocks: &[Block],
    x: Tensor<4>,
) -> Tensor<2> {
    let n = x.dims()[0];
    let patches = encoder_tokens(patch_embed, pos_embed, x);
    let cls = cls_with_pos(cls_token, pos_embed, n);
    let (last, rest) = blocks.split_last().expect("a ViT has at least one block");
    let tokens = run_blocks(rest, Tensor::cat(vec![cls, patches], 1));
    let probs = last.attn.probs(last.norm1.forward(tokens)); // [N, H, T, T]
    let [_, h, t, _] = probs.dims();
    probs
        .slice_dim(2, 0..1)
        .slice_dim(3, 1..t)
        .sum_dim(1)
        .div_scalar(h as f64)
        .reshape([n, t - 1])
}

/// Every block's attention probabilities, `[N, C, H, W] →` one `[N, heads, T, T]` per block
/// (`T = 1 + L`, class token first; rows sum to 1): block `i`'s attention is computed on the
/// tokens block `i` receives, exactly as its forward does (the analyses of FS-VFM Fig. 4).
pub(crate) fn block_attention(
    patch_embed: &PatchEmbed,
    pos_embed: &Tensor<3>,
    cls_token: &Tensor<3>,
    blocks: &[Block],
    x: Tensor<4>,
) -> Vec<Tensor<4>> {
    let n = x.dims()[0];
    let patches = encoder_tokens(patch_embed, pos_embed, x);
    let mut tokens = Tensor::cat(vec![cls_with_pos(cls_token, pos_embed, n), patches], 1);
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        out.push(block.attn.probs(block.norm1.forward(tokens.clone())));
        if i + 1 < blocks.len() {
            tokens = run_blocks(std::slice::from_ref(block), tokens);
        }
    }
    out
}

/// ViT with a 2-D sin-cos initialised (then trainable) position embedding and a linear head.
///
/// Keys: `cls_token [1,1,D]`, `pos_embed [1,1+L,D]`, `patch_embed.proj.*`, `blocks.{i}.*`,
/// `norm.*` (cls readout) or `fc_norm.*` (mean-pool readout), `head.{weight [C,D], bias}`.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Class token `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// Position embedding `[1, 1 + L, D]` (cls row first).
    pub pos_embed: Param<Tensor<3>>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Transformer blocks.
    pub blocks: Vec<Block>,
    /// Final norm, present for the cls readout (`global_pool = false`).
    pub norm: Option<LayerNorm>,
    /// Norm after mean pooling, present for `global_pool = true`.
    pub fc_norm: Option<LayerNorm>,
    /// Classifier `D → num_classes`; absent when `num_classes = 0`.
    pub head: Option<Linear>,
    global_pool: bool,
    img_size: usize,
    in_chans: usize,
}

impl VisionTransformer {
    /// A freshly initialised classifier. `head` gets the fine-tuning init of the official code
    /// (trunc-normal std 2e-5, bias 0); everything else as in pre-training (spec §1.1, §6.0).
    ///
    /// The config must be valid ([`VitConfig::validate`]).
    pub fn new(cfg: &VitConfig, device: &Device) -> Self {
        let d = cfg.embed_dim;
        let g = cfg.grid_size();
        let blocks = cfg
            .drop_path_rates()
            .into_iter()
            .map(|dp| Block::new(d, cfg.num_heads, cfg.mlp_hidden(), dp, device))
            .collect();
        let head = (cfg.num_classes > 0).then(|| {
            let mut h = xavier_linear(d, cfg.num_classes, true, device);
            // trunc_normal_(std=2e-5): the ±2 cut-off is at 2 (absolute), so it never bites.
            h.weight = normal_param([d, cfg.num_classes], 2e-5, device);
            h
        });
        Self {
            cls_token: normal_param([1, 1, d], 0.02, device),
            // Trainable downstream, unlike in pre-training.
            pos_embed: fixed_param(sincos_2d(d, g, g, true), [1, g * g + 1, d], device)
                .set_require_grad(true),
            patch_embed: PatchEmbed::new(cfg.in_chans, d, cfg.patch_size, device),
            blocks,
            norm: (!cfg.global_pool).then(|| layer_norm(d, device)),
            fc_norm: cfg.global_pool.then(|| layer_norm(d, device)),
            head,
            global_pool: cfg.global_pool,
            img_size: cfg.img_size,
            in_chans: cfg.in_chans,
        }
    }

    /// Expected input `[C, H, W]`.
    pub fn input_chw(&self) -> [usize; 3] {
        [self.in_chans, self.img_size, self.img_size]
    }

    /// Token sequence after the blocks (before any norm): `[N, C, H, W] → [N, 1 + L, D]`.
    pub fn forward_tokens(&self, x: Tensor<4>) -> Tensor<3> {
        let n = x.dims()[0];
        let pos = self.pos_embed.val();
        let patches = encoder_tokens(&self.patch_embed, &pos, x);
        let cls = cls_with_pos(&self.cls_token.val(), &pos, n);
        run_blocks(&self.blocks, Tensor::cat(vec![cls, patches], 1))
    }

    /// Last-block class-token attention to the patches, head-averaged: `[N, C, H, W] → [N, L]`
    /// (heat maps; see `cls_attention`).
    pub fn last_attention(&self, x: Tensor<4>) -> Tensor<2> {
        cls_attention(
            &self.patch_embed,
            &self.pos_embed.val(),
            &self.cls_token.val(),
            &self.blocks,
            x,
        )
    }

    /// Every block's attention probabilities: `[N, C, H, W] →` `depth` tensors `[N, heads, T, T]`
    /// (`T = 1 + L`, class token first).
    pub fn attention_probs(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        block_attention(
            &self.patch_embed,
            &self.pos_embed.val(),
            &self.cls_token.val(),
            &self.blocks,
            x,
        )
    }

    /// Pooled features `[N, D]`: `fc_norm(mean of patch tokens)` or `norm(x)[:, 0]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let tokens = self.forward_tokens(x);
        self.pool(tokens)
    }

    /// The readout of [`Self::forward_features`] applied to `[N, 1 + L, D]` tokens.
    pub fn pool(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [n, t, d] = tokens.dims();
        if self.global_pool {
            let mean = tokens.slice([0..n, 1..t, 0..d]).mean_dim(1).reshape([n, d]);
            match &self.fc_norm {
                Some(norm) => norm.forward(mean),
                None => mean,
            }
        } else {
            let tokens = match &self.norm {
                Some(norm) => norm.forward(tokens),
                None => tokens,
            };
            tokens.slice([0..n, 0..1, 0..d]).reshape([n, d])
        }
    }

    /// Logits `[N, num_classes]` from features `[N, D]` (the features themselves without a head).
    pub fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        match &self.head {
            Some(head) => head.forward(features),
            None => features,
        }
    }

    /// `[N, C, H, W] → [N, num_classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(x))
    }
}

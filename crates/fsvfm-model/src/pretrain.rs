//! The FS-VFM pre-training networks (spec §1): the online network `FSFMViT` (encoder, MAE pixel
//! decoder, Siamese representation decoder, projector, predictor) and the EMA target network
//! (encoder, representation decoder, projector).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor};

use crate::ModelError;
use crate::config::PretrainConfig;
use crate::layers::{
    Block, ByolMlp, LN_EPS, PatchEmbed, fixed_param, l2_normalize, layer_norm, linear3,
    normal_param, run_blocks, xavier_linear,
};
use crate::mask::PatchMask;
use crate::pos_embed::sincos_2d;
use crate::vit::{cls_with_pos, encoder_tokens};

/// Encoder on the visible patches: `[N, C, H, W]` + mask → `[N, 1 + K, D]` after the final `norm`
/// (spec §1.1 steps 1–4).
#[allow(clippy::too_many_arguments)]
fn encode(
    cls_token: &Param<Tensor<3>>,
    pos_embed: &Param<Tensor<3>>,
    patch_embed: &PatchEmbed,
    blocks: &[Block],
    norm: &LayerNorm,
    x: Tensor<4>,
    mask: &PatchMask,
) -> Tensor<3> {
    let device = x.device();
    let pos = pos_embed.val();
    let tokens = encoder_tokens(patch_embed, &pos, x); // [N, L, D]
    let [n, _, d] = tokens.dims();
    let visible = tokens.gather(1, mask.keep_tensor(d, &device)); // [N, K, D]
    let cls = cls_with_pos(&cls_token.val(), &pos, n);
    crate::train_ops::layer_norm(
        norm,
        LN_EPS,
        run_blocks(blocks, Tensor::cat(vec![cls, visible], 1)),
    )
}

/// Appends the shared mask token at the masked positions and restores patch order:
/// `[N, 1 + K, W] → [N, 1 + L, W]` (cls first), as the official `forward_{rep_,}decoder`.
fn unshuffle(x: Tensor<3>, mask_token: &Tensor<3>, mask: &PatchMask) -> Tensor<3> {
    let [n, t, w] = x.dims();
    let (_, l) = mask.dims();
    let cls = x.clone().slice([0..n, 0..1, 0..w]);
    let mut parts = vec![x.slice([0..n, 1..t, 0..w])];
    if l + 1 > t {
        parts.push(mask_token.clone().repeat_dim(0, n).repeat_dim(1, l + 1 - t));
    }
    let seq = Tensor::cat(parts, 1).gather(1, mask.restore_tensor(w, &mask_token.device()));
    Tensor::cat(vec![cls, seq], 1)
}

/// Representation decoder + token mean (cls included) + projector: `[N, 1+K, D] → [N, P]`
/// (before the predictor and normalisation). The `rep_decoder_pos_embed` is added as stored
/// (all zeros in the official models, quirk §11.3).
#[allow(clippy::too_many_arguments)]
fn rep_decode_project(
    embed: &Linear,
    mask_token: &Param<Tensor<3>>,
    pos_embed: &Param<Tensor<3>>,
    blocks: &[Block],
    norm: &LayerNorm,
    pred: &Linear,
    projector: &ByolMlp,
    latent: Tensor<3>,
    mask: &PatchMask,
) -> Tensor<2> {
    let x = unshuffle(linear3(embed, latent), &mask_token.val(), mask) + pos_embed.val();
    let x = linear3(
        pred,
        crate::train_ops::layer_norm(norm, LN_EPS, run_blocks(blocks, x)),
    );
    let [n, _, d] = x.dims();
    projector.forward(x.mean_dim(1).reshape([n, d]))
}

/// Outputs of the online network.
#[derive(Debug, Clone)]
pub struct OnlineOutput {
    /// Pixel predictions for every patch `[N, L, p·p·C]` (order (p, q, c) inside a patch).
    pub pred: Tensor<3>,
    /// `L2norm(predictor(projector(mean tokens)))` `[N, projection_size]`.
    pub p: Tensor<2>,
}

/// The online network (official `FSFMViT`), keys exactly as the released pre-training checkpoints
/// (spec §8): encoder (`cls_token, pos_embed, patch_embed, blocks, norm`), `mask_token`,
/// `rep_decoder_{embed,pos_embed,blocks,norm,pred}`, `decoder_{embed,pos_embed,blocks,norm,pred}`,
/// `projector.projection_head.{0,1,3}`, `predictor.projection_head.{0,1,3}`.
#[derive(Module, Debug)]
pub struct FsfmPretrain {
    /// Class token `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// Fixed sin-cos position embedding `[1, 1 + L, D]`.
    pub pos_embed: Param<Tensor<3>>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Encoder blocks.
    pub blocks: Vec<Block>,
    /// Encoder final norm.
    pub norm: LayerNorm,
    /// The one mask token `[1, 1, D]`, shared by both decoders (inserted before `decoder_embed`).
    pub mask_token: Param<Tensor<3>>,
    /// `D → D`.
    pub rep_decoder_embed: Linear,
    /// `[1, 1 + L, D]`, all zeros (never initialised in the official code).
    pub rep_decoder_pos_embed: Param<Tensor<3>>,
    /// Representation-decoder blocks (depth 2, 16 heads).
    pub rep_decoder_blocks: Vec<Block>,
    /// Representation-decoder norm.
    pub rep_decoder_norm: LayerNorm,
    /// `D → D`.
    pub rep_decoder_pred: Linear,
    /// `D → decoder_embed_dim`.
    pub decoder_embed: Linear,
    /// Fixed sin-cos `[1, 1 + L, decoder_embed_dim]`.
    pub decoder_pos_embed: Param<Tensor<3>>,
    /// Pixel-decoder blocks.
    pub decoder_blocks: Vec<Block>,
    /// Pixel-decoder norm.
    pub decoder_norm: LayerNorm,
    /// `decoder_embed_dim → p·p·C`.
    pub decoder_pred: Linear,
    /// BYOL projector `D → 4096 → P`.
    pub projector: ByolMlp,
    /// BYOL predictor `P → 4096 → P`.
    pub predictor: ByolMlp,
}

impl FsfmPretrain {
    /// A freshly initialised online network (official `initialize_weights`).
    ///
    /// The config must be valid ([`PretrainConfig::validate`]).
    pub fn new(cfg: &PretrainConfig, device: &Device) -> Self {
        let e = &cfg.encoder;
        let (d, g, hidden) = (e.embed_dim, e.grid_size(), e.mlp_hidden());
        let dd = cfg.decoder_embed_dim;
        let l1 = g * g + 1;
        let ratio = e.mlp_ratio;
        let blocks = |n: usize, dim: usize, heads: usize| -> Vec<Block> {
            (0..n)
                .map(|_| Block::new(dim, heads, (dim as f64 * ratio) as usize, 0.0, device))
                .collect()
        };
        Self {
            cls_token: normal_param([1, 1, d], 0.02, device),
            pos_embed: fixed_param(sincos_2d(d, g, g, true), [1, l1, d], device),
            patch_embed: PatchEmbed::new(e.in_chans, d, e.patch_size, device),
            blocks: (0..e.depth)
                .map(|_| Block::new(d, e.num_heads, hidden, 0.0, device))
                .collect(),
            norm: layer_norm(d, device),
            mask_token: normal_param([1, 1, d], 0.02, device),
            rep_decoder_embed: xavier_linear(d, d, true, device),
            rep_decoder_pos_embed: fixed_param(vec![0.0; l1 * d], [1, l1, d], device),
            rep_decoder_blocks: blocks(cfg.rep_decoder_depth, d, cfg.rep_decoder_num_heads),
            rep_decoder_norm: layer_norm(d, device),
            rep_decoder_pred: xavier_linear(d, d, true, device),
            decoder_embed: xavier_linear(d, dd, true, device),
            decoder_pos_embed: fixed_param(sincos_2d(dd, g, g, true), [1, l1, dd], device),
            decoder_blocks: blocks(cfg.decoder_depth, dd, cfg.decoder_num_heads),
            decoder_norm: layer_norm(dd, device),
            decoder_pred: xavier_linear(dd, cfg.patch_dim(), true, device),
            projector: ByolMlp::new(d, cfg.projection_size, cfg.projection_hidden_size, device),
            predictor: ByolMlp::new(
                cfg.projection_size,
                cfg.projection_size,
                cfg.projection_hidden_size,
                device,
            ),
        }
    }

    /// Encoder on the visible patches: `[N, C, H, W]` + mask `[N, L]` → latent `[N, 1 + K, D]`.
    pub fn forward_encoder(&self, x: Tensor<4>, mask: &PatchMask) -> Result<Tensor<3>, ModelError> {
        check_mask(&x, &self.pos_embed, mask)?;
        Ok(encode(
            &self.cls_token,
            &self.pos_embed,
            &self.patch_embed,
            &self.blocks,
            &self.norm,
            x,
            mask,
        ))
    }

    /// MAE pixel decoder: latent `[N, 1 + K, D]` → predictions `[N, L, p·p·C]` (cls dropped).
    pub fn forward_decoder(&self, latent: Tensor<3>, mask: &PatchMask) -> Tensor<3> {
        let x = linear3(
            &self.decoder_embed,
            unshuffle(latent, &self.mask_token.val(), mask),
        );
        let x = x + self.decoder_pos_embed.val();
        let x = linear3(
            &self.decoder_pred,
            crate::train_ops::layer_norm(
                &self.decoder_norm,
                LN_EPS,
                run_blocks(&self.decoder_blocks, x),
            ),
        );
        let [n, t, c] = x.dims();
        x.slice([0..n, 1..t, 0..c])
    }

    /// Representation branch: latent → `L2norm(predictor(projector(mean tokens)))` `[N, P]`.
    pub fn forward_representation(&self, latent: Tensor<3>, mask: &PatchMask) -> Tensor<2> {
        let z = rep_decode_project(
            &self.rep_decoder_embed,
            &self.mask_token,
            &self.rep_decoder_pos_embed,
            &self.rep_decoder_blocks,
            &self.rep_decoder_norm,
            &self.rep_decoder_pred,
            &self.projector,
            latent,
            mask,
        );
        l2_normalize(self.predictor.forward(z))
    }

    /// The online forward on the masked view: pixel predictions and `p`.
    pub fn forward(&self, x: Tensor<4>, mask: &PatchMask) -> Result<OnlineOutput, ModelError> {
        let latent = self.forward_encoder(x, mask)?;
        Ok(OnlineOutput {
            p: self.forward_representation(latent.clone(), mask),
            pred: self.forward_decoder(latent, mask),
        })
    }
}

/// The EMA target network (official `TargetNetworkViT`): encoder, representation decoder and
/// projector, no predictor and no pixel decoder. Keys are the online network's, less
/// `decoder_*` and `predictor.*`, so an EMA pairs parameters by name.
#[derive(Module, Debug)]
pub struct TargetNetwork {
    /// Class token `[1, 1, D]`.
    pub cls_token: Param<Tensor<3>>,
    /// Fixed sin-cos position embedding `[1, 1 + L, D]`.
    pub pos_embed: Param<Tensor<3>>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Encoder blocks.
    pub blocks: Vec<Block>,
    /// Encoder final norm.
    pub norm: LayerNorm,
    /// Mask token (unused on the full view, kept for key parity and EMA).
    pub mask_token: Param<Tensor<3>>,
    /// `D → D`.
    pub rep_decoder_embed: Linear,
    /// Zeros, copied from the online network as `load_state_dict(online, strict=False)` does.
    pub rep_decoder_pos_embed: Param<Tensor<3>>,
    /// Representation-decoder blocks.
    pub rep_decoder_blocks: Vec<Block>,
    /// Representation-decoder norm.
    pub rep_decoder_norm: LayerNorm,
    /// `D → D`.
    pub rep_decoder_pred: Linear,
    /// BYOL projector.
    pub projector: ByolMlp,
}

impl TargetNetwork {
    /// The target as the official start of training leaves it: a copy of `online`'s shared
    /// parameters (same values, new parameter ids), not trainable.
    pub fn from_online(online: &FsfmPretrain) -> Self {
        let o = online.clone();
        Self {
            cls_token: o.cls_token,
            pos_embed: o.pos_embed,
            patch_embed: o.patch_embed,
            blocks: o.blocks,
            norm: o.norm,
            mask_token: o.mask_token,
            rep_decoder_embed: o.rep_decoder_embed,
            rep_decoder_pos_embed: o.rep_decoder_pos_embed,
            rep_decoder_blocks: o.rep_decoder_blocks,
            rep_decoder_norm: o.rep_decoder_norm,
            rep_decoder_pred: o.rep_decoder_pred,
            projector: o.projector,
        }
        .no_grad()
    }

    /// A freshly initialised target network of the given shape.
    pub fn new(cfg: &PretrainConfig, device: &Device) -> Self {
        Self::from_online(&FsfmPretrain::new(cfg, device))
    }

    /// `z = L2norm(projector(mean tokens(rep decoder(encoder(full view)))))` `[N, P]`.
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<2>, ModelError> {
        let [n, _, _, _] = x.dims();
        let l = self.pos_embed.val().dims()[1] - 1;
        let mask = PatchMask::none(n, l);
        check_mask(&x, &self.pos_embed, &mask)?;
        let latent = encode(
            &self.cls_token,
            &self.pos_embed,
            &self.patch_embed,
            &self.blocks,
            &self.norm,
            x,
            &mask,
        );
        Ok(l2_normalize(rep_decode_project(
            &self.rep_decoder_embed,
            &self.mask_token,
            &self.rep_decoder_pos_embed,
            &self.rep_decoder_blocks,
            &self.rep_decoder_norm,
            &self.rep_decoder_pred,
            &self.projector,
            latent,
            &mask,
        )))
    }
}

/// The mask must be `[N, L]` for this image batch and model.
fn check_mask(
    x: &Tensor<4>,
    pos_embed: &Param<Tensor<3>>,
    mask: &PatchMask,
) -> Result<(), ModelError> {
    let n = x.dims()[0];
    let l = pos_embed.val().dims()[1] - 1;
    if mask.dims() != (n, l) {
        return Err(ModelError::Mask(format!(
            "mask is {:?} but the batch needs [N, L] = [{n}, {l}]",
            mask.dims()
        )));
    }
    Ok(())
}

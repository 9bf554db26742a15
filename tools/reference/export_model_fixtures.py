#!/usr/bin/env python3
"""Reference fixtures for the Rust model crate (fsvfm-model).

Builds the FS-VFM models with PyTorch + timm exactly as the official code structures them
(timm `Block`/`PatchEmbed`/`VisionTransformer`, the official attribute names and forward passes of
`models_fsfm.py`, `models_vit.py` and `models_vit_fs_adapter.py`, see ../../shared/spec/method.md
§1, §3, §6.0, §7, §8), with small sizes and random weights, and writes:

  fixtures/<model>.safetensors       weights with the official keys and PyTorch layouts
  fixtures/<model>.pth               the same, inside the official torch.save dict
                                     ({'model', 'optimizer', 'epoch', 'scaler', 'args': Namespace})
  fixtures/reference.safetensors     inputs and outputs of each model (fp32)
  fixtures/reference.json            configs, key->shape maps and parameter counts of the full-size
                                     presets (ViT-T/S/B/L), for structural parity tests

Run:  tools/reference/setup.sh && tools/reference/.venv/bin/python tools/reference/export_model_fixtures.py
"""
import argparse
import json
import os
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import timm
from safetensors.torch import save_file
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "fsvfm-model", "tests", "fixtures")
LN = partial(nn.LayerNorm, eps=1e-6)


# ---------------------------------------------------------------- fixed 2-D sin-cos (MAE util/pos_embed.py)
def sincos_1d(dim, pos):
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid, cls_token=False):
    gh = np.arange(grid, dtype=np.float32)
    gw = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(gw, gh), axis=0).reshape([2, 1, grid, grid])  # w first, as MAE
    emb = np.concatenate([sincos_1d(dim // 2, mesh[0]), sincos_1d(dim // 2, mesh[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return emb


# ---------------------------------------------------------------- official-structure models
class BYOLMLP(nn.Module):
    def __init__(self, dim, out, hidden):
        super().__init__()
        self.projection_head = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, x):
        return self.projection_head(x)


def blocks(n, dim, heads, mlp_ratio):
    return nn.ModuleList([Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=LN) for _ in range(n)])


class Encoder(nn.Module):
    """Shared encoder + representation decoder of FSFMViT / TargetNetworkViT (same attribute names)."""

    def build_encoder(self, img, patch, chans, dim, depth, heads, mlp_ratio, proj_size, proj_hidden, rep_depth, rep_heads):
        self.patch_embed = PatchEmbed(img, patch, chans, dim)
        L = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, dim), requires_grad=False)
        self.blocks = blocks(depth, dim, heads, mlp_ratio)
        self.norm = LN(dim)
        self.projector = BYOLMLP(dim, proj_size, proj_hidden)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.rep_decoder_embed = nn.Linear(dim, dim)
        self.rep_decoder_pos_embed = nn.Parameter(torch.zeros(1, L + 1, dim), requires_grad=False)
        self.rep_decoder_blocks = blocks(rep_depth, dim, rep_heads, mlp_ratio)
        self.rep_decoder_norm = LN(dim)
        self.rep_decoder_pred = nn.Linear(dim, dim)

    def forward_encoder(self, x, x_mask):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        N, L, D = x.shape
        ids_shuffle = torch.argsort(x_mask, dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        keep = int(L - x_mask[0].sum().item())
        x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, D))
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(N, -1, -1)
        x = torch.cat((cls, x), dim=1)
        for b in self.blocks:
            x = b(x)
        return self.norm(x), ids_restore

    def unshuffle(self, x, ids_restore):
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        return torch.cat([x[:, :1, :], x_], dim=1)

    def forward_rep_decoder(self, x, ids_restore):
        x = self.unshuffle(self.rep_decoder_embed(x), ids_restore) + self.rep_decoder_pos_embed
        for b in self.rep_decoder_blocks:
            x = b(x)
        return self.rep_decoder_pred(self.rep_decoder_norm(x))


class FSFMOnline(Encoder):
    def __init__(self, img=224, patch=16, chans=3, dim=768, depth=12, heads=12, dec_dim=512, dec_depth=8, dec_heads=16,
                 proj_size=256, proj_hidden=4096, rep_depth=2, rep_heads=16, mlp_ratio=4.0):
        super().__init__()
        self.build_encoder(img, patch, chans, dim, depth, heads, mlp_ratio, proj_size, proj_hidden, rep_depth, rep_heads)
        self.predictor = BYOLMLP(proj_size, proj_size, proj_hidden)
        L = self.patch_embed.num_patches
        self.decoder_embed = nn.Linear(dim, dec_dim)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L + 1, dec_dim), requires_grad=False)
        self.decoder_blocks = blocks(dec_depth, dec_dim, dec_heads, mlp_ratio)
        self.decoder_norm = LN(dec_dim)
        self.decoder_pred = nn.Linear(dec_dim, patch * patch * chans)
        self.patch = patch

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(self.unshuffle(x, ids_restore)) + self.decoder_pos_embed
        for b in self.decoder_blocks:
            x = b(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def patchify(self, imgs):
        p = self.patch
        n, c, h, w = imgs.shape
        x = imgs.reshape(n, c, h // p, p, w // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, (h // p) * (w // p), p * p * c)

    def forward(self, imgs, x_mask):
        latent, ids_restore = self.forward_encoder(imgs, x_mask)
        feats = self.forward_rep_decoder(latent, ids_restore)
        p = F.normalize(self.predictor(self.projector(feats.mean(dim=1))), dim=-1)
        pred = self.forward_decoder(latent, ids_restore)
        return latent, pred, p


class FSFMTarget(Encoder):
    def __init__(self, img=224, patch=16, chans=3, dim=768, depth=12, heads=12, proj_size=256, proj_hidden=4096,
                 rep_depth=2, rep_heads=16, mlp_ratio=4.0):
        super().__init__()
        self.build_encoder(img, patch, chans, dim, depth, heads, mlp_ratio, proj_size, proj_hidden, rep_depth, rep_heads)

    def forward(self, imgs):
        n = imgs.shape[0]
        latent, ids_restore = self.forward_encoder(imgs, torch.zeros(n, self.patch_embed.num_patches))
        feats = self.forward_rep_decoder(latent, ids_restore)
        return F.normalize(self.projector(feats.mean(dim=1)), dim=-1)


def forward_losses(model, imgs, pred, x_mask, region, p, z):
    t = model.patchify(imgs)
    t = (t - t.mean(dim=-1, keepdim=True)) / (t.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
    e = ((pred - t) ** 2).mean(dim=-1)
    rec_m = (e * x_mask).sum() / x_mask.sum()
    rec_fr = (e * region).sum() / region.sum()
    sim = -0.5 * F.cosine_similarity(p, z, dim=-1).mean()
    return rec_m, rec_fr, sim, rec_m + 0.007 * rec_fr + 0.1 * sim


def classifier(img, patch, dim, depth, heads, mlp_ratio=4.0, num_classes=2, global_pool=True):
    return VisionTransformer(img_size=img, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                             mlp_ratio=mlp_ratio, qkv_bias=True, num_classes=num_classes,
                             global_pool="avg" if global_pool else "token", fc_norm=global_pool, norm_layer=LN)


class Adapter(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.linear1 = nn.Linear(c, c // r, bias=False)
        self.linear2 = nn.Linear(c // r, c, bias=False)

    def forward(self, x):
        b = F.relu(self.linear1(x))
        return F.relu(self.linear2(b)), b


class AdapterClassifier(nn.Module):
    """models_vit_fs_adapter.VisionTransformer with global_pool=True."""

    def __init__(self, img, patch, dim, depth, heads, num_classes=2, r=4, mlp_ratio=4.0):
        super().__init__()
        self.vit = classifier(img, patch, dim, depth, heads, mlp_ratio, 0, True)
        self.adapter = Adapter(dim, r)
        self.projector = nn.Linear(dim // r, dim // r)
        self.head = nn.Linear(2 * dim, num_classes)

    def state_dict_official(self):
        sd = {k[len("vit."):] if k.startswith("vit.") else k: v for k, v in self.state_dict().items()}
        return sd

    def forward(self, x):
        h = self.vit.forward_head(self.vit.forward_features(x), pre_logits=True)
        u, b = self.adapter(h)
        return self.head(torch.cat([h, u], dim=-1)), F.normalize(self.projector(b), dim=-1)


# ---------------------------------------------------------------- helpers
def randomize(model, gen):
    """Random values for every tensor (weights, biases, norms, tokens, position tables) so parity
    exercises each one."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype.is_floating_point:
                v = torch.randn(p.shape, generator=gen) * 0.3
                if name.endswith("norm.weight") or ".norm1." in name or ".norm2." in name or "projection_head.1.weight" in name:
                    v = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
                p.copy_(v)


def official_pth(path, sd, with_optimizer_state=None):
    """The dict layout of util/misc.save_model, with a pickled argparse.Namespace under 'args'."""
    if with_optimizer_state is not None:
        opt = with_optimizer_state
    else:
        opt = {"state": {}, "param_groups": [{"lr": 1e-3, "weight_decay": 0.05, "params": list(range(len(sd)))}]}
    args = argparse.Namespace(model="fsfm_vit_small_patch16", mask_ratio=0.75, norm_pix_loss=True, blr=1.5e-4, epochs=400)
    torch.save({"model": sd, "optimizer": opt, "epoch": 9, "scaler": {"scale": 65536.0, "growth_factor": 2.0}, "args": args}, path)


def shapes(sd):
    return {k: list(v.shape) for k, v in sd.items()}


def count(sd, pred=lambda k: True):
    return int(sum(v.numel() for k, v in sd.items() if pred(k)))


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    os.makedirs(OUT, exist_ok=True)
    ref = {}
    meta = {"torch": torch.__version__, "timm": timm.__version__, "cases": {}, "presets": {}}

    # -------- pre-training: online + target, D=32 (2 heads), 32px / patch 8 -> L=16, pixel decoder 24-d
    pc = dict(img=32, patch=8, chans=3, dim=32, depth=2, heads=2, proj_size=16, proj_hidden=48, rep_depth=2, rep_heads=16)
    online = FSFMOnline(dec_dim=24, dec_depth=1, dec_heads=4, **pc).eval()
    target = FSFMTarget(**pc).eval()
    randomize(online, gen)
    randomize(target, gen)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    mask = torch.zeros(2, 16)
    for i in range(2):
        mask[i, torch.randperm(16, generator=gen)[:12]] = 1.0
    region = torch.zeros(2, 16)
    region[0, torch.nonzero(mask[0])[:3, 0]] = 1.0  # three masked patches of sample 0; none in sample 1
    with torch.no_grad():
        latent, pred, p = online(x, mask)
        z = target(x)
        rec_m, rec_fr, sim, total = forward_losses(online, x, pred, mask, region, p, z)
        # What fine-tuning reads from this checkpoint: the encoder on the full view, mean of the patch
        # tokens, and a fresh fc_norm (identity affine); the pre-training `norm` is dropped (§6.0).
        t = online.patch_embed(x) + online.pos_embed[:, 1:, :]
        t = torch.cat([(online.cls_token + online.pos_embed[:, :1, :]).expand(2, -1, -1), t], dim=1)
        for b in online.blocks:
            t = b(t)
        enc_feats = F.layer_norm(t[:, 1:, :].mean(dim=1), (32,), eps=1e-6)
    sd = online.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "pretrain_online.safetensors"))
    official_pth(os.path.join(OUT, "pretrain_online.pth"), sd)
    save_file({k: v.contiguous() for k, v in target.state_dict().items()}, os.path.join(OUT, "pretrain_target.safetensors"))
    ref.update({"pretrain.x": x, "pretrain.mask": mask, "pretrain.region": region, "pretrain.latent": latent,
                "pretrain.pred": pred, "pretrain.p": p, "pretrain.z": z, "pretrain.encoder_features": enc_feats,
                "pretrain.losses": torch.stack([rec_m, rec_fr, sim, total])})
    meta["cases"]["pretrain"] = {
        "config": {"encoder": {"img_size": 32, "patch_size": 8, "in_chans": 3, "embed_dim": 32, "depth": 2, "num_heads": 2},
                   "decoder_embed_dim": 24, "decoder_depth": 1, "decoder_num_heads": 4, "rep_decoder_depth": 2,
                   "rep_decoder_num_heads": 16, "projection_size": 16, "projection_hidden_size": 48},
        "losses": ["rec_masked", "rec_region", "sim", "total"]}

    # -------- classifier, mean-pool + fc_norm (the official readout); .pth with real AdamW state
    cls_avg = classifier(32, 8, 32, 2, 2).eval()
    randomize(cls_avg, gen)
    x2 = torch.randn(3, 3, 32, 32, generator=gen)
    with torch.no_grad():
        tokens = cls_avg.forward_features(x2)
        feats = cls_avg.forward_head(tokens, pre_logits=True)
        logits = cls_avg.forward_head(tokens)
    sd = {k: v.detach().clone() for k, v in cls_avg.state_dict().items()}  # opt.step() below updates in place
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "classifier_avg.safetensors"))
    opt = torch.optim.AdamW(cls_avg.parameters(), lr=1e-3)
    cls_avg.train()
    F.cross_entropy(cls_avg(x2), torch.tensor([0, 1, 1])).backward()
    opt.step()  # populates exp_avg / exp_avg_sq, as in a real checkpoint; the weights saved are the ones above
    official_pth(os.path.join(OUT, "classifier_avg.pth"), sd, opt.state_dict())
    ref.update({"classifier_avg.x": x2, "classifier_avg.tokens": tokens, "classifier_avg.features": feats,
                "classifier_avg.logits": logits})
    meta["cases"]["classifier_avg"] = {"config": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}}

    # -------- classifier, cls token + norm; other grid (48/16 = 3x3), mlp_ratio 2, 4 heads; fp16 .pth
    cls_tok = classifier(48, 16, 32, 1, 4, mlp_ratio=2.0, num_classes=3, global_pool=False).eval()
    randomize(cls_tok, gen)
    half_sd = {k: v.half() for k, v in cls_tok.state_dict().items()}
    cls_tok.load_state_dict({k: v.float() for k, v in half_sd.items()})  # reference = the fp16 weights
    x3 = torch.randn(2, 3, 48, 48, generator=gen)
    with torch.no_grad():
        tokens = cls_tok.forward_features(x3)
        feats = cls_tok.forward_head(tokens, pre_logits=True)
        logits = cls_tok.forward_head(tokens)
    torch.save({"model": half_sd, "epoch": 3}, os.path.join(OUT, "classifier_token_fp16.pth"))
    ref.update({"classifier_token.x": x3, "classifier_token.features": feats, "classifier_token.logits": logits})
    meta["cases"]["classifier_token"] = {"config": {"img_size": 48, "patch_size": 16, "embed_dim": 32, "depth": 1,
                                                    "num_heads": 4, "mlp_ratio": 2.0, "num_classes": 3, "global_pool": False}}

    # -------- FS-Adapter classifier
    ad = AdapterClassifier(32, 8, 32, 2, 2).eval()
    randomize(ad, gen)
    x4 = torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        logits, c = ad(x4)
    save_file({k: v.contiguous() for k, v in ad.state_dict_official().items()}, os.path.join(OUT, "adapter.safetensors"))
    ref.update({"adapter.x": x4, "adapter.logits": logits, "adapter.contrastive": c})
    meta["cases"]["adapter"] = {"config": {"backbone": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}}}

    # -------- fixed position tables
    ref["sincos.d32.g4"] = torch.from_numpy(sincos_2d(32, 4, True)).float()
    ref["sincos.d16.g14"] = torch.from_numpy(sincos_2d(16, 14, True)).float()

    save_file({k: v.contiguous().float() for k, v in ref.items()}, os.path.join(OUT, "reference.safetensors"))

    # -------- full-size presets: key -> shape maps and parameter counts (meta device: no memory)
    sizes = {"vit_small_patch16": (384, 12, 12), "vit_base_patch16": (768, 12, 12),
             "vit_large_patch16": (1024, 24, 16)}
    with torch.device("meta"):
        for name, (d, depth, heads) in sizes.items():
            on = FSFMOnline(224, 16, 3, d, depth, heads).state_dict()
            te = FSFMTarget(224, 16, 3, d, depth, heads).state_dict()
            cl = classifier(224, 16, d, depth, heads).state_dict()
            adm = AdapterClassifier(224, 16, d, depth, heads)
            asd = adm.state_dict_official()
            meta["presets"][name] = {
                "online": shapes(on), "target": shapes(te), "classifier": shapes(cl), "adapter": shapes(asd),
                "online_params": count(on), "target_params": count(te), "classifier_params": count(cl),
                "adapter_trainable_params": count(asd, lambda k: any(s in k for s in ("adapter", "projector", "head"))),
            }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(meta, f, indent=None, separators=(",", ":"), sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"fixtures written to {os.path.normpath(OUT)} ({total / 1e6:.2f} MB)")
    for name in ("vit_small_patch16", "vit_base_patch16", "vit_large_patch16"):
        print(name, "adapter trainable params:", meta["presets"][name]["adapter_trainable_params"])


if __name__ == "__main__":
    main()

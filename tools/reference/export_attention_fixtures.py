#!/usr/bin/env python3
"""Reference fixtures for the attention analyses (FS-VFM Fig. 4): mean attention distance and
head-diversity KL, per block and head, computed in PyTorch (float64) independently of the Rust code.

  crates/fsvfm-eval/tests/fixtures/attention_torch.json
    synthetic       random attention probabilities [2, 3, 13, 13] on a 3x4 grid (patch 16) and their stats
    classifier_avg  the stats of the model fixture classifier_avg (timm VisionTransformer, 2 blocks x 2 heads,
                    32 px / patch 8) on its reference input classifier_avg.x (3 images), the attention taken
                    from timm's own blocks (qkv, scale, softmax) on the tokens each block receives;
                    cls_map: the last block's class-token attention over the patches, heads averaged
                    [3, 16] (FS-VFM Fig. 5)

Definitions (as the MIM literature's public analysis code):
  P = A[:, :, 1:, 1:] with rows renormalised; D[i, j] = patch * ||(r_i, c_i) - (r_j, c_j)||
  MAD[h] = mean_{b, i} sum_j P[b, h, i, j] D[i, j]
  KL[h]  = mean_{b, i, j != h} sum_k P[b, h, i, k] (ln(P[b, h, i, k] + 1e-10) - ln(P[b, j, i, k] + 1e-10))

Run:  tools/reference/setup.sh && tools/reference/.venv/bin/python tools/reference/export_attention_fixtures.py
"""
import json
import os

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_FIX = os.path.join(HERE, "..", "..", "crates", "fsvfm-model", "tests", "fixtures")
OUT = os.path.join(HERE, "..", "..", "crates", "fsvfm-eval", "tests", "fixtures", "attention_torch.json")


def stats(a, rows, cols, patch):
    """a: [B, H, T, T] attention probabilities (float64), class token first."""
    p = a[:, :, 1:, 1:]
    p = p / p.sum(-1, keepdim=True)
    r = torch.arange(rows * cols, dtype=torch.float64) // cols
    c = torch.arange(rows * cols, dtype=torch.float64) % cols
    d = patch * torch.sqrt((r[:, None] - r[None, :]) ** 2 + (c[:, None] - c[None, :]) ** 2)
    mad = (p * d).sum(-1).mean(dim=(0, 2))
    h = a.shape[1]
    kl = torch.zeros(h, dtype=torch.float64)
    for i in range(h):
        terms = [(p[:, i] * (torch.log(p[:, i] + 1e-10) - torch.log(p[:, j] + 1e-10))).sum(-1).mean()
                 for j in range(h) if j != i]
        kl[i] = torch.stack(terms).mean() if terms else 0.0
    return mad.tolist(), kl.tolist()


def block_attention(model, x):
    """Every block's attention of a timm VisionTransformer, on the tokens that block receives."""
    t = model.patch_embed(x)
    t = model._pos_embed(t)
    t = model.norm_pre(t)
    out = []
    for blk in model.blocks:
        y = blk.norm1(t)
        b, n, dim = y.shape
        heads = blk.attn.num_heads
        qkv = blk.attn.qkv(y).reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k = blk.attn.q_norm(qkv[0]), blk.attn.k_norm(qkv[1])
        out.append(((q @ k.transpose(-2, -1)) * blk.attn.scale).softmax(-1))
        t = blk(t)
    # The loop's tokens are timm's own (a check that the attention was taken on the right inputs).
    torch.testing.assert_close(model.norm(t) if not model.global_pool else t, model.forward_features(x))
    return out


def main():
    gen = torch.Generator().manual_seed(2025)
    doc = {"torch": torch.__version__}

    rows, cols, patch = 3, 4, 16
    logits = 3.0 * torch.randn(2, 3, 1 + rows * cols, 1 + rows * cols, generator=gen, dtype=torch.float64)
    probs = logits.softmax(-1).float()
    mad, kl = stats(probs.double(), rows, cols, patch)
    doc["synthetic"] = {"shape": list(probs.shape), "rows": rows, "cols": cols, "patch": patch,
                        "probs": probs.flatten().tolist(), "mad": mad, "kl": kl}

    import timm  # noqa: F401  (timm's VisionTransformer, as export_model_fixtures.py builds it)
    from export_model_fixtures import classifier

    model = classifier(32, 8, 32, 2, 2).eval()
    model.load_state_dict(load_file(os.path.join(MODEL_FIX, "classifier_avg.safetensors")))
    x = load_file(os.path.join(MODEL_FIX, "reference.safetensors"))["classifier_avg.x"]
    with torch.no_grad():
        blocks = block_attention(model, x)
        per_block = [stats(a.double(), 4, 4, 8) for a in blocks]
    # Fig. 5's map: the last block's class-token row over the patches, heads averaged.
    cls_map = blocks[-1][:, :, 0, 1:].mean(1)
    doc["classifier_avg"] = {"images": x.shape[0], "mad": [m for m, _ in per_block], "kl": [k for _, k in per_block],
                             "cls_map": cls_map.tolist()}

    with open(OUT, "w") as f:
        json.dump(doc, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()

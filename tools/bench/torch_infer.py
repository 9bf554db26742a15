#!/usr/bin/env python3
"""One PyTorch inference measurement (timm ViT, the same architecture as `fsvfm bench`): prints one
JSON line. Run in its own process so threads and peak RSS are this configuration's alone.

    torch_infer.py --model vit_small_patch16 --threads 2 --batch-size 8 --iters 6 --warmup 2 [--bf16]
"""
import argparse
import json
import resource
import time
from functools import partial

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

# The papers' sizes (ViT-S has 12 heads, as fsvfm's preset and the official FS-VFM code).
SIZES = {"vit_tiny_patch16": (192, 12, 3), "vit_small_patch16": (384, 12, 12), "vit_base_patch16": (768, 12, 12),
         "vit_large_patch16": (1024, 24, 16)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vit_small_patch16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, depth, heads = SIZES[a.model]
    model = VisionTransformer(img_size=224, patch_size=16, embed_dim=d, depth=depth, num_heads=heads, mlp_ratio=4.0,
                              qkv_bias=True, num_classes=2, global_pool="avg", fc_norm=True,
                              norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    x = torch.randn(a.batch_size, 3, 224, 224)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        for i in range(a.warmup + a.iters):
            t = time.perf_counter()
            model(x)
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"impl": "torch-bf16-autocast" if a.bf16 else "torch-fp32", "model": a.model,
                      "batch_size": a.batch_size, "threads": a.threads, "median_s": med,
                      "img_per_s": a.batch_size / med, "times_s": times,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()

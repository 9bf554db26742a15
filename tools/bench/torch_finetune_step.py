#!/usr/bin/env python3
"""One PyTorch measurement of a full fine-tuning step (the same step as `fsvfm bench --finetune`):
the official mean-pooled timm ViT classifier with drop path 0.1 in train mode, a Mixup batch
(λ 0.7 with the flipped batch) and its soft targets, SoftTargetCrossEntropy, backward, AdamW over
the BEiT layer-decay groups (0.65, wd 0.05). fp32, CPU. Prints one JSON line; run in its own process
so threads and peak RSS are this configuration's alone.

    torch_finetune_step.py --model vit_small_patch16 --threads 2 --batch-size 8 --iters 3 --warmup 1
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from export_model_fixtures import classifier  # noqa: E402
from export_train_fixtures import param_groups_lrd  # noqa: E402
from torch_infer import SIZES  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vit_small_patch16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from timm.loss import SoftTargetCrossEntropy

    d, depth, heads = SIZES[a.model]
    model = classifier(224, 16, d, depth, heads)
    for blk, rate in zip(model.blocks, torch.linspace(0, 0.1, depth).tolist()):
        if rate > 0:
            blk.drop_path1 = blk.drop_path2 = timm_drop_path(rate)
    model.train()
    groups, _ = param_groups_lrd(model, 0.05, 0.65)
    opt = torch.optim.AdamW(groups, lr=1e-4)
    n = a.batch_size
    x = torch.randn(n, 3, 224, 224)
    x = 0.7 * x + 0.3 * x.flip(0)
    y = torch.arange(n) % 2
    onehot = torch.nn.functional.one_hot(y, 2).float() * 0.9 + 0.05
    target = 0.7 * onehot + 0.3 * onehot.flip(0)
    loss_fn = SoftTargetCrossEntropy()
    times = []
    for i in range(a.warmup + a.iters):
        t = time.perf_counter()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"impl": "torch-fp32", "kind": "finetune-step", "model": a.model, "batch_size": n,
                      "threads": a.threads, "median_s": med, "img_per_s": n / med, "times_s": times,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__}))


def timm_drop_path(rate):
    from timm.layers import DropPath
    return DropPath(rate)


if __name__ == "__main__":
    main()

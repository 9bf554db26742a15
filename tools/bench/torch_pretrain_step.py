#!/usr/bin/env python3
"""One PyTorch measurement of the FS-VFM pre-training iteration (the same step as
`fsvfm bench --train`): online forward on a 75 %-masked batch + backward, target forward under
no_grad, the three losses, clip_grad_norm_(1.0), AdamW (timm groups), EMA. fp32, CPU. Prints one
JSON line; run in its own process so threads and peak RSS are this configuration's alone.

    torch_pretrain_step.py --model vit_small_patch16 --threads 2 --batch-size 8 --iters 3 --warmup 1
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from export_model_fixtures import FSFMOnline, FSFMTarget  # noqa: E402
from export_train_fixtures import losses, param_groups  # noqa: E402
from torch_infer import SIZES  # noqa: E402  (the same model sizes as the inference benchmark)



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vit_small_patch16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, depth, heads = SIZES[a.model]
    online = FSFMOnline(dim=d, depth=depth, heads=heads).train()
    target = FSFMTarget(dim=d, depth=depth, heads=heads)
    target.load_state_dict(online.state_dict(), strict=False)
    for p in target.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(param_groups(online, 0.05), lr=1e-4, betas=(0.9, 0.95))
    n, L = a.batch_size, 196
    x = torch.randn(n, 3, 224, 224)
    mask = torch.ones(n, L)
    region = torch.zeros(n, L)
    for i in range(n):
        for k in range(49):
            mask[i, (k * 4 + i) % L] = 0.0
        region[i, torch.nonzero(mask[i])[:8, 0]] = 1.0
    times = []
    for i in range(a.warmup + a.iters):
        t = time.perf_counter()
        _, pred, p = online(x, mask)
        with torch.no_grad():
            z = target(x)
        total = losses(online, x, pred, mask, region, p, z)[3]
        total.backward()
        torch.nn.utils.clip_grad_norm_(online.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            src = dict(online.named_parameters())
            for name, pt in target.named_parameters():
                pt.mul_(0.996).add_(src[name].detach(), alpha=0.004)
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({"impl": "torch-fp32", "kind": "pretrain-step", "model": a.model, "batch_size": n,
                      "threads": a.threads, "median_s": med, "img_per_s": n / med, "times_s": times,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()

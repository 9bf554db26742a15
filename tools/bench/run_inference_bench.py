#!/usr/bin/env python3
"""Side-by-side CPU inference benchmark: `fsvfm bench` (burn flex + our fused kernels) against the
same timm ViT in PyTorch (fp32, and bf16 autocast), each configuration in its own process,
rounds interleaved, medians reported. Writes the table into BENCHMARKS.md between markers and
the raw runs to bench-out/inference.jsonl.

    tools/reference/setup.sh                        # torch + timm in tools/reference/.venv
    cargo build --release -p fsvfm-cli
    tools/reference/.venv/bin/python tools/bench/run_inference_bench.py [--rounds 3] [--models ...]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FSVFM = os.path.join(ROOT, "target", "release", "fsvfm")
TORCH = [sys.executable, os.path.join(ROOT, "tools", "bench", "torch_infer.py")]
BEGIN, END = "<!-- inference-bench:begin -->", "<!-- inference-bench:end -->"


def run(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def splice(path, begin, end, block):
    """Replaces the text between the markers `begin` and `end` in `path` (appends if absent)."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def flags():
    """The CPU flags that decide the paths: AVX-512, its BF16/FP16/VNNI, and AMX."""
    try:
        have = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return "unknown"
    want = ["avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]
    return ", ".join(f"`{f}`" for f in want if f in have) or "no AVX-512, no AMX"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["vit_small_patch16", "vit_base_patch16"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 1])
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = ap.parse_args()
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # see the env notes: they slow a current numpy/torch
        env.pop(k, None)
    def ours(precision):
        return lambda m, t, b: [FSVFM, "--threads", str(t), "--precision", precision, "bench", "--model", m,
                                "--batch-size", str(b), "--iters", str(a.iters), "--warmup", "2"]

    def torch(*extra):
        return lambda m, t, b: TORCH + ["--model", m, "--threads", str(t), "--batch-size", str(b),
                                        "--iters", str(a.iters), "--warmup", "2", *extra]

    amx = "amx_tile" in open("/proc/cpuinfo").read()
    impls = {
        "fsvfm fp32": ours("fp32"),
        "fsvfm bf16": ours("bf16"),
        "torch fp32": torch(),
        "torch bf16 autocast": torch("--bf16"),
    }
    results = {}
    os.makedirs(os.path.join(ROOT, "bench-out"), exist_ok=True)
    raw = open(os.path.join(ROOT, "bench-out", "inference.jsonl"), "w")
    for r in range(a.rounds):
        for m in a.models:
            for t in a.threads:
                for b in a.batch_sizes:
                    for name, cmd in impls.items():
                        res = run(cmd(m, t, b), env)
                        if amx and name == "fsvfm bf16":
                            # The same binary with AMX hidden: the AVX-512 BF16 fallback, side by side.
                            alt = run(cmd(m, t, b), dict(env, FSVFM_NO_AMX="1"))
                            alt.update({"round": r, "config": "fsvfm bf16 no-amx", "batch": b})
                            raw.write(json.dumps(alt) + "\n")
                            results.setdefault((m, t, b, "fsvfm bf16 no-amx"), []).append(alt)
                        res.update({"round": r, "config": name, "batch": b})
                        raw.write(json.dumps(res) + "\n")
                        raw.flush()
                        results.setdefault((m, t, b, name), []).append(res)
                        print(f"round {r} {m} T{t} B{b} {name}: {res['img_per_s']:.2f} img/s, "
                              f"peak {res['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    torch_ver = next(v[0].get("torch") for k, v in results.items() if k[3].startswith("torch"))
    lines = [BEGIN, "",
             f"Measured {time.strftime('%Y-%m-%d')} on `{cpu_name()}` ({os.cpu_count()} vCPUs), 224×224, random "
             f"weights, {a.rounds} interleaved rounds × {a.iters} timed iterations (2 warm-up); img/s = median over "
             f"rounds of each run's median (batch 1: latency = 1000 / img/s ms); peak RSS = max over rounds. "
             f"PyTorch {torch_ver} with timm, `torch.set_num_threads(T)`, `inference_mode`; fsvfm "
             f"`--precision fp32|bf16`. CPU flags: {flags()}.",
             "",
             "| model | threads | batch | fsvfm fp32 img/s | fsvfm bf16 img/s | fsvfm bf16 without AMX img/s | "
             "torch fp32 img/s | torch bf16 img/s | **fp32 / torch fp32** | **bf16 / torch bf16** | "
             "bf16 / torch fp32 | fsvfm peak RSS (fp32 / bf16) | torch peak RSS (fp32 / bf16) | "
             "RSS ratio (bf16 / torch bf16) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in a.models:
        for t in a.threads:
            for b in a.batch_sizes:
                names = [n for n in list(impls) + ["fsvfm bf16 no-amx"] if (m, t, b, n) in results]
                med = {n: statistics.median(x["img_per_s"] for x in results[(m, t, b, n)]) for n in names}
                rss = {n: max(x["peak_rss_bytes"] for x in results[(m, t, b, n)]) for n in names}
                noamx = f"{med['fsvfm bf16 no-amx']:.2f}" if "fsvfm bf16 no-amx" in med else "–"
                f32, b16 = med["fsvfm fp32"], med["fsvfm bf16"]
                tf, tb = med["torch fp32"], med["torch bf16 autocast"]
                lines.append(
                    f"| {m} | {t} | {b} | {f32:.2f} | {b16:.2f} | {noamx} | {tf:.2f} | {tb:.2f} | "
                    f"**{f32 / tf:.2f}x** | **{b16 / tb:.2f}x** | {b16 / tf:.2f}x | {rss['fsvfm fp32'] / 2**20:.0f} / "
                    f"{rss['fsvfm bf16'] / 2**20:.0f} MiB | {rss['torch fp32'] / 2**20:.0f} / "
                    f"{rss['torch bf16 autocast'] / 2**20:.0f} MiB | "
                    f"{rss['fsvfm bf16'] / rss['torch bf16 autocast']:.2f}x |")
    lines += ["", "Regenerate: `tools/reference/.venv/bin/python tools/bench/run_inference_bench.py` "
              "(after `tools/reference/setup.sh` and `cargo build --release -p fsvfm-cli`).", "", END]
    block = "\n".join(lines)
    splice(a.out, BEGIN, END, block)
    print(block)


if __name__ == "__main__":
    main()

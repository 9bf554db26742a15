#!/usr/bin/env python3
"""Side-by-side gradient all-reduce of a multi-process run: our process group
(`cargo run --release -p fsvfm-train --example group_bench`, a star through rank 0, pipelined)
against PyTorch's gloo all-reduce (tools/bench/torch_allreduce.py), W processes on loopback TCP,
the trainable parameter count of a pre-training model, rounds interleaved, medians reported.
Writes the table into BENCHMARKS.md between the allreduce-bench markers.

    tools/reference/setup.sh
    cargo build --release -p fsvfm-train --example group_bench
    tools/reference/.venv/bin/python tools/bench/run_allreduce_bench.py [--worlds 2 3] [--rounds 3]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_inference_bench import ROOT, cpu_name, run, splice  # noqa: E402

BENCH = os.path.join(ROOT, "target", "release", "examples", "group_bench")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vit_base_patch16")
    ap.add_argument("--worlds", nargs="+", type=int, default=[2, 3])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = ap.parse_args()
    rows = []
    for w in a.worlds:
        ours, theirs, ratios, count = [], [], [], None
        for _ in range(a.rounds):
            r = run([BENCH, a.model, str(w)])
            count = r["parameters"]
            t = run([sys.executable, os.path.join(ROOT, "tools", "bench", "torch_allreduce.py"),
                     "--count", str(count), "--world", str(w)])
            ours.append(r["seconds"])
            theirs.append(t["seconds"])
            ratios.append(t["seconds"] / r["seconds"])
            print(f"W={w}: fsvfm {r['seconds']:.3f} s, gloo {t['seconds']:.3f} s", file=sys.stderr)
        rows.append((w, count, statistics.median(ours), statistics.median(theirs), statistics.median(ratios)))
    lines = [
        "<!-- allreduce-bench:begin -->",
        f"Gradient all-reduce of a multi-process run ({a.model} pre-training networks, "
        f"{rows[0][1]:,} trainable fp32 values), W processes on loopback TCP, {cpu_name()}, "
        f"{time.strftime('%Y-%m-%d')}, {a.rounds} interleaved rounds, medians "
        "(`tools/bench/run_allreduce_bench.py`):",
        "",
        "| processes | fsvfm process group (s) | PyTorch gloo `all_reduce` (s) | speed vs gloo |",
        "| --- | --- | --- | --- |",
    ]
    for w, _, o, t, ratio in rows:
        lines.append(f"| {w} | {o:.3f} | {t:.3f} | **{ratio:.2f}x** |")
    lines.append("<!-- allreduce-bench:end -->")
    splice(a.out, "<!-- allreduce-bench:begin -->", "<!-- allreduce-bench:end -->", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

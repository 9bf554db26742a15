#!/usr/bin/env python3
"""Side-by-side CPU training-step benchmark: `fsvfm bench --train` (pre-training iteration) or
`fsvfm bench --finetune` (full fine-tuning step) on burn flex autodiff, against the PyTorch
reference step (tools/bench/torch_pretrain_step.py / torch_finetune_step.py), each configuration
in its own process, rounds interleaved, medians reported. Writes the table into BENCHMARKS.md
between the kind's markers and the raw runs to bench-out/<kind>.jsonl.

    tools/reference/setup.sh
    cargo build --release -p fsvfm-cli
    tools/reference/.venv/bin/python tools/bench/run_train_bench.py [--kind finetune] [--rounds 2] [--models ...]
        [--baseline OLD_FSVFM_BINARY]

`--baseline` runs an earlier build as a third configuration in the same rounds, so a change's
effect is measured against the same machine state (this VM's speed drifts by ±10 % within minutes).
The bold ratio is the median over rounds of each round's fsvfm/torch ratio (the two run back to
back), which cancels most of that drift.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_inference_bench import FSVFM, ROOT, cpu_name, run, splice  # noqa: E402

KINDS = {
    "pretrain": dict(flag="--train", script="torch_pretrain_step.py", marker="train-bench",
                     step="online forward + backward on a 75 %-masked batch, target forward, the three losses, "
                          "global clip, AdamW, EMA"),
    "finetune": dict(flag="--finetune", script="torch_finetune_step.py", marker="finetune-bench",
                     step="the mean-pooled classifier with drop path 0.1 on a Mixup batch, soft-target CE, "
                          "backward, AdamW over the layer-decay groups"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["vit_small_patch16", "vit_base_patch16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--kind", choices=sorted(KINDS), default="pretrain")
    ap.add_argument("--baseline", help="an earlier fsvfm binary, run as a third configuration")
    a = ap.parse_args()
    kind = KINDS[a.kind]
    torch_cmd = [sys.executable, os.path.join(ROOT, "tools", "bench", kind["script"])]
    begin, end = f"<!-- {kind['marker']}:begin -->", f"<!-- {kind['marker']}:end -->"
    common = ["--batch-size", str(a.batch_size), "--iters", str(a.iters), "--warmup", "1"]
    impls = {
        "fsvfm": lambda m: [FSVFM, "--threads", str(a.threads), "bench", kind["flag"], "--model", m] + common,
        "torch": lambda m: torch_cmd + ["--model", m, "--threads", str(a.threads)] + common,
    }
    if a.baseline:
        impls["baseline"] = lambda m: [a.baseline] + impls["fsvfm"](m)[1:]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    results = {}
    os.makedirs(os.path.join(ROOT, "bench-out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench-out", f"{a.kind}.jsonl"), "w") as raw:
        for r in range(a.rounds):
            for m in a.models:
                for name, cmd in impls.items():
                    res = run(cmd(m), env)
                    res.update({"round": r, "config": name})
                    raw.write(json.dumps(res) + "\n")
                    raw.flush()
                    results.setdefault((m, name), []).append(res)
                    print(f"round {r} {m} {name}: {res['img_per_s']:.2f} img/s, "
                          f"peak {res['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    torch_ver = results[(a.models[0], "torch")][0].get("torch")
    lines = [begin, "",
             f"Measured {time.strftime('%Y-%m-%d')} on `{cpu_name()}` ({os.cpu_count()} vCPUs), {a.threads} threads, "
             f"batch {a.batch_size}, 224×224, fp32, random weights; one iteration = {kind['step']}. {a.rounds} interleaved "
             f"rounds × {a.iters} timed iterations (1 warm-up); img/s = median over rounds of each run's median; "
             f"peak RSS = max over rounds; **fsvfm / torch** = median over rounds of each round's ratio "
             f"(run back to back). PyTorch {torch_ver}.",
             ""]
    base = "baseline" in impls
    extra_head = " baseline img/s | fsvfm / baseline |" if base else ""
    lines += ["| model | fsvfm img/s | torch img/s | **fsvfm / torch** | fsvfm peak RSS | torch peak RSS | RSS ratio |"
              + extra_head,
              "|---|---|---|---|---|---|---|" + ("---|---|" if base else "")]

    def round_ratio(m, x, y):
        return statistics.median(p["img_per_s"] / q["img_per_s"] for p, q in zip(results[(m, x)], results[(m, y)]))

    for m in a.models:
        med = {n: statistics.median(x["img_per_s"] for x in results[(m, n)]) for n in impls}
        rss = {n: max(x["peak_rss_bytes"] for x in results[(m, n)]) for n in impls}
        extra = (f" {med['baseline']:.2f} | {round_ratio(m, 'fsvfm', 'baseline'):.2f}x |" if base else "")
        lines.append(f"| {m} | {med['fsvfm']:.2f} | {med['torch']:.2f} | **{round_ratio(m, 'fsvfm', 'torch'):.2f}x** | "
                     f"{rss['fsvfm'] / 2**20:.0f} MiB | {rss['torch'] / 2**20:.0f} MiB | "
                     f"{rss['fsvfm'] / rss['torch']:.2f}x |" + extra)
    lines += ["", f"Regenerate: `tools/reference/.venv/bin/python tools/bench/run_train_bench.py --kind {a.kind}`.",
              "", end]
    block = "\n".join(lines)
    splice(a.out, begin, end, block)
    print(block)


if __name__ == "__main__":
    main()

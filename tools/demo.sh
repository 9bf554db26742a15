#!/usr/bin/env bash
# What runs end to end today (the full `fsvfm demo` arrives with the pre-training and transfer issues):
# builds the binary, draws the five masking strategies, loads an official-structure checkpoint
# (a small one from the reference fixtures) and converts it, scores a CSV, and measures a ViT-Ti.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-demo-out}"
mkdir -p "$out"
cargo build --release -q -p fsvfm-cli
fsvfm=target/release/fsvfm
fix=crates/fsvfm-model/tests/fixtures

echo "== masks: the five strategies on a face-like region map =="
$fsvfm mask --parsing docs/synthetic_parsing.png --all-strategies --png "$out/mask_strategies.png" --seed 7
$fsvfm mask --parsing docs/synthetic_parsing.png --strategy crfr-p --region eyes --seed 7 --png "$out/crfr_p_eyes.png" >/dev/null

echo "== checkpoints: an official-structure .pth (torch.save dict with optimizer, scaler, Namespace args) =="
$fsvfm inspect "$fix/pretrain_online.pth"
$fsvfm convert "$fix/pretrain_online.pth" "$out/pretrain_online.safetensors"

echo "== metrics from a score file =="
$fsvfm eval-scores --scores docs/example_scores.csv --bootstrap 500 --seed 0

echo "== inference speed, ViT-Ti/16, batch 8 =="
$fsvfm bench --model vit_tiny_patch16 --iters 3 --warmup 1
echo "outputs in $out/"

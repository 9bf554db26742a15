#!/usr/bin/env bash
# What runs end to end today (the full `fsvfm demo` arrives with the face-pipeline and transfer issues):
# builds the binary, draws the five masking strategies, pre-trains the tiny recipe on synthetic faces
# (with a kill-free resume), exports the encoder as an official .pth, loads an official-structure
# checkpoint and converts it, scores a CSV, and measures a ViT-Ti.
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

echo "== pre-training: the tiny recipe on 64 synthetic faces with exact region maps =="
rm -rf "$out/faces" "$out/pretrain"
$fsvfm synthetic-faces --output "$out/faces" --count 64 --size 224 --seed 1
$fsvfm pretrain --config tiny --data "$out/faces" --output "$out/pretrain" --epochs 4 --quiet
$fsvfm pretrain --config tiny --data "$out/faces" --output "$out/pretrain" --epochs 6 --resume --quiet
$fsvfm convert "$out/pretrain/checkpoint-5/online.safetensors" "$out/pretrain/checkpoint-5.pth"
echo "(pictures: $out/pretrain/recon-*.png and $out/pretrain/loss.png)"

echo "== checkpoints: an official-structure .pth (torch.save dict with optimizer, scaler, Namespace args) =="
$fsvfm inspect "$fix/pretrain_online.pth"
$fsvfm convert "$fix/pretrain_online.pth" "$out/pretrain_online.safetensors"

echo "== metrics from a score file =="
$fsvfm eval-scores --scores docs/example_scores.csv --bootstrap 500 --seed 0

echo "== inference speed, ViT-Ti/16, batch 8 =="
$fsvfm bench --model vit_tiny_patch16 --iters 3 --warmup 1
echo "outputs in $out/"

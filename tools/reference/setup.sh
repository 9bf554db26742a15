#!/usr/bin/env bash
# Creates the reference Python environment (torch + timm + scikit-learn) in tools/reference/.venv.
# Only the fixture exporters and the benchmarks need it; the Rust test suite reads committed fixtures.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${FSVFM_REF_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements.txt"
"$venv/bin/python" -c "import torch, timm; print('reference env ready:', 'torch', torch.__version__, 'timm', timm.__version__)"

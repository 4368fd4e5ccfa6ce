#!/usr/bin/env bash
# Create .venv (if missing) and install tuneforge into it, CPU-only.
#
# PyTorch is installed first, pinned to the CPU build available on this kind of machine, so that
# tuneforge's own `torch>=2.4` requirement is already met and pip never pulls CUDA wheels.
# On a CUDA machine, set TUNEFORGE_TORCH to the torch requirement you want (e.g. "torch" with
# --index-url of your CUDA build), or install torch into .venv yourself before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TUNEFORGE_VENV:-.venv}"
TORCH_REQ="${TUNEFORGE_TORCH:-torch==2.13.0}"
EXTRAS="${1:-}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "$TORCH_REQ" 2>&1 | grep -v "^WARNING: Location" || true
fi
"$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, tuneforge; print(f'tuneforge {tuneforge.__version__} with torch {torch.__version__} in $VENV')"

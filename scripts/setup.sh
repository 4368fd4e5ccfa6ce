#!/usr/bin/env bash
# Create .venv (if missing) and install tuneforge into it, CPU-only.
#
# PyTorch is installed first, pinned to the CPU build available on this kind of machine, so that
# tuneforge's own `torch>=2.4` requirement is already met and pip never pulls CUDA wheels.
# On a CUDA machine, set TUNEFORGE_TORCH to the torch requirement you want (e.g. "torch" with
# --index-url of your CUDA build), or install torch into .venv yourself before running this.
#
# Packages are installed with uv (itself installed from the package index into .venv) because it
# installs the same set about 10x faster than pip (docs/SPEED.md: torch 4 s against ~40 s, the
# other dependencies 10 s against 121 s on a 2-core CPU). uv does not read pip's configuration, so
# scripts/uv_pip_args.py passes it pip's index, find-links and constraint settings. Where uv cannot
# be installed or fails, pip does the install as before; TUNEFORGE_INSTALLER=pip forces pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TUNEFORGE_VENV:-.venv}"
TORCH_REQ="${TUNEFORGE_TORCH:-torch==2.13.0}"
EXTRAS="${1:-}"
PY="$VENV/bin/python"

quiet_pip() { "$PY" -m pip install -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }

use_uv=0
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
if [ "${TUNEFORGE_INSTALLER:-uv}" = uv ]; then
  quiet_pip uv
  "$PY" -m uv --version >/dev/null 2>&1 && use_uv=1
fi
if [ "$use_uv" = 0 ]; then
  quiet_pip --upgrade pip
fi

install() {
  if [ "$use_uv" = 1 ]; then
    mapfile -t uv_args < <("$PY" -m pip config list 2>/dev/null | "$PY" scripts/uv_pip_args.py)
    if "$PY" -m uv pip install -q --compile-bytecode --python "$PY" "${uv_args[@]}" "$@"; then
      return
    fi
    echo "uv could not install $*; installing with pip instead" >&2
    quiet_pip --upgrade pip
  fi
  quiet_pip "$@"
}

if ! "$PY" -c "import torch" 2>/dev/null; then
  install "$TORCH_REQ"
fi
install -e ".${EXTRAS:+[$EXTRAS]}"
"$PY" -c "import torch, tuneforge; print(f'tuneforge {tuneforge.__version__} with torch {torch.__version__} in $VENV')"

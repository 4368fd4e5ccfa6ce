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
# The llama extra compiles llama.cpp for this CPU (-march=native). On CPUs with AMX its AMX kernels
# (used for q8_0 / q4 weights) segfaulted in llama_decode on our q8_0 export of the built-in model
# (Intel Xeon, 2 cores, llama-cpp-python 0.3.36; llama.cpp issue #20824 reports the same crash in
# ggml_backend_amx_mul_mat), so there it is built without them: GCC keeps explicit -mno-* flags over
# -march=native, and CMake takes CFLAGS/CXXFLAGS as its initial compile flags. uv reuses a wheel it
# built before; run `uv cache clean llama-cpp-python` first if one was built with AMX.
if [[ ",$EXTRAS," == *",llama,"* ]] && grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CFLAGS="${CFLAGS:+$CFLAGS }$no_amx" CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }$no_amx"
  echo "AMX CPU: building llama.cpp (the llama extra) without its AMX kernels (scripts/setup.sh says why)"
fi
install -e ".${EXTRAS:+[$EXTRAS]}"
"$PY" -c "import torch, tuneforge; print(f'tuneforge {tuneforge.__version__} with torch {torch.__version__} in $VENV')"

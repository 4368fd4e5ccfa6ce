#!/usr/bin/env bash
# One command on a fresh machine: set up .venv with the dev extras, then run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow` for the built-in-model tests).
# TUNEFORGE_EXTRAS picks the extras installed (default dev; CI's slow stage adds llama, which compiles llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "${TUNEFORGE_EXTRAS:-dev}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"

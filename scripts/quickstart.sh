#!/usr/bin/env bash
# One command on a fresh machine: set up .venv, then fine-tune the built-in model on the quickstart
# task and write runs/quickstart (adapter, metrics, loss plot, before/after report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tuneforge train examples/quickstart/recipe.yaml "$@"

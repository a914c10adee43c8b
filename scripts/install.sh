#!/usr/bin/env bash
# Creates .venv and installs llmserve into it. `scripts/install.sh dev` adds what the tests and the
# benchmarks need.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# NOTE: torch is pinned in pyproject.toml; installing it first keeps pip from resolving a CUDA build.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ "${1:-}" = "dev" ]; then
  .venv/bin/python -m pip install -q -e ".[dev,ray,bench]"  # the Ray tests run in CI too
else
  .venv/bin/python -m pip install -q -e .
fi
# Build the engine's decode-attention kernel now (once per machine, 1-2 minutes) rather than at the
# first engine start; without a compiler the engine uses its gather path and says so.
.venv/bin/python -m llmserve.engine.decode_kernel || true

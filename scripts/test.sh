#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh dev
scripts/install-services.sh
export LLMSERVE_HOME="${LLMSERVE_HOME:-$PWD/.llmserve-home}"
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/mypy --strict src
.venv/bin/pytest "$@"

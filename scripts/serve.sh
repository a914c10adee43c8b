#!/usr/bin/env bash
# One command on a fresh machine: install llmserve and serve the built-in model on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/llmserve serve "$@"

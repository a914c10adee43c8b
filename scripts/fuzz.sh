#!/usr/bin/env bash
# Fuzz every route of a real `llmserve serve` with schemathesis; no answer may be a 5xx.
# What it runs and how it counts: tests/fuzz/fuzzer.py. Options: --requests N (at least N per
# part, default 5000), --examples N (per operation and run), --backend fake|local.
#   scripts/fuzz.sh                    # fake model: a few minutes
#   scripts/fuzz.sh --backend local    # tiny-chat on the real engine and the embedding model
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python tests/fuzz/fuzzer.py "$@"

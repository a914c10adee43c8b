"""The fuzz tests drive `fuzzer.py`, the tool behind scripts/fuzz.sh."""

from __future__ import annotations

import sys
from pathlib import Path

# NOTE: pytest runs with --import-mode=importlib; this makes `fuzzer` importable from the tests.
sys.path.insert(0, str(Path(__file__).parent))

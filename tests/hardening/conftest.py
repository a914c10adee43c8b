"""Issue 18's attacks on real server processes: grammars, poison jobs, background limits."""

from __future__ import annotations

import sys
from pathlib import Path

# NOTE: pytest runs with --import-mode=importlib; this makes the helpers here importable.
sys.path.insert(0, str(Path(__file__).parent))

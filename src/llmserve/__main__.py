"""`python -m llmserve` runs the command line."""

from __future__ import annotations

from llmserve.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

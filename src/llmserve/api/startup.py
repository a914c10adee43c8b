"""Starting a backend inside the app's lifespan: a refused model ends the process, one line."""

from __future__ import annotations

import os
import sys

from llmserve.backends.base import Backend
from llmserve.errors import ModelRefusedError

EXIT_USAGE = 2


async def start_or_exit(backend: Backend) -> None:
    """`backend.start()`; a model the engine cannot compute prints `llmserve: ...` and exits 2.

    NOTE: uvicorn turns any exception in the lifespan into a traceback and exit status 3, so a
    refusal leaves the process here, before anything is served.
    """
    try:
        await backend.start()
    except ModelRefusedError as exc:
        print(f"llmserve: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_USAGE)

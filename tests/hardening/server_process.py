"""A real `llmserve serve --config` process (the built-in model on the real engine) and its keys.

A native crash in the server kills this process, never the test: the tests see it die.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmserve.auth.keys import KeySpec
from llmserve.auth.store import SqliteKeyStore

TINY = """
models:
  - {name: tiny, source: llmserve/tiny-chat, max_model_len: 4096}
engine: {kv_cache_memory_mb: 64, max_num_seqs: 16}
"""


def create_key(home: Path, spec: KeySpec) -> str:
    """A key in the server's key store (as `llmserve keys create` makes it); its secret."""
    home.mkdir(parents=True, exist_ok=True)
    store = SqliteKeyStore(home / "llmserve.db")
    try:
        return store.create_key(spec)[1]
    finally:
        store.close()


def write_config(tmp_path: Path, settings: str = TINY) -> Path:
    """A config file serving from `tmp_path / "home"` with `settings` (YAML)."""
    path = tmp_path / "llmserve.yaml"
    path.write_text(f"home: {tmp_path / 'home'}\n{settings}", encoding="utf-8")
    return path


@contextmanager
def serve(config: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The server process on a free port, and its base URL (http://127.0.0.1:PORT/v1)."""
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config), "--port", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ
    ) as process:
        assert process.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", process.stdout.readline())
        assert match, "the server did not start"
        try:
            yield process, match.group(1)
        finally:
            process.kill()
            process.wait(timeout=30)

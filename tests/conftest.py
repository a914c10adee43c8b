"""Fixtures shared by every test package: the built-in model, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmserve.models.builtin import ensure_tiny_chat
from llmserve.models.tokenizer import ChatTokenizer


@pytest.fixture(scope="session")
def llmserve_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where built models live: `$LLMSERVE_HOME` when set (CI reuses it), else a tmp dir."""
    env = os.environ.get("LLMSERVE_HOME")
    return Path(env) if env else tmp_path_factory.mktemp("llmserve-home")


@pytest.fixture(scope="session")
def tiny_chat_path(llmserve_home: Path) -> Path:
    """The built-in tiny-chat model folder."""
    return ensure_tiny_chat(llmserve_home)


@pytest.fixture(scope="session")
def tiny_chat_tokenizer(tiny_chat_path: Path) -> ChatTokenizer:
    """The built-in model's tokenizer with its Llama-2 chat template."""
    return ChatTokenizer.from_pretrained(str(tiny_chat_path))

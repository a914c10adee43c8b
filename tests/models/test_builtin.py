from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmserve.config import BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL, ModelConfig
from llmserve.models.builtin import ensure_tiny_chat
from llmserve.models.source import ModelLoadError, resolve_model_path
from llmserve.models.tokenizer import ChatTokenizer


def test_tiny_chat_is_a_llama_model_with_the_llama_2_template(tiny_chat_path: Path) -> None:
    config = json.loads((tiny_chat_path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["max_position_embeddings"] == 2048
    tokenizer = ChatTokenizer.from_pretrained(str(tiny_chat_path))
    assert tokenizer.chat_template is not None and "[INST]" in tokenizer.chat_template
    assert tokenizer.encode("hi")[0] == tokenizer.hf.bos_token_id


def test_tiny_chat_is_reused_not_rebuilt(tiny_chat_path: Path) -> None:
    weights = tiny_chat_path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_tiny_chat(tiny_chat_path.parent.parent) == tiny_chat_path
    assert weights.stat().st_mtime_ns == before


def test_tiny_chat_weights_come_from_a_fixed_seed(tmp_path: Path, tiny_chat_path: Path) -> None:
    rebuilt = ensure_tiny_chat(tmp_path)
    assert (rebuilt / "model.safetensors").read_bytes() == (
        tiny_chat_path / "model.safetensors"
    ).read_bytes()


def test_byte_level_tokenizer_round_trips_any_text(tiny_chat_path: Path) -> None:
    tokenizer = ChatTokenizer.from_pretrained(str(tiny_chat_path))
    text = "héllo 😀 日本語 \t tabs"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_resolve_sources(tiny_chat_path: Path, tmp_path: Path) -> None:
    home = tiny_chat_path.parent.parent
    assert resolve_model_path(ModelConfig("m", BUILTIN_CHAT_MODEL), home) == str(tiny_chat_path)
    assert resolve_model_path(ModelConfig("m", str(tiny_chat_path)), home) == str(tiny_chat_path)
    assert resolve_model_path(ModelConfig("m", "org/some-model"), home) == "org/some-model"
    embedding = resolve_model_path(ModelConfig("e", BUILTIN_EMBEDDING_MODEL), home)
    assert Path(embedding, "modules.json").is_file()
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path(ModelConfig("m", "./no/such/folder"), home)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve_model_path(ModelConfig("m", str(tmp_path / "empty")), home)

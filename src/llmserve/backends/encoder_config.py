"""How a sentence-transformers model folder says to pool and normalise its token embeddings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmserve.config import BUILTIN_EMBEDDING_MODEL, ModelConfig

PoolingMode = Literal["mean", "cls", "max", "mean_sqrt_len"]

_POOLING_FLAGS: tuple[tuple[str, PoolingMode], ...] = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_mean_tokens", "mean"),
)


@dataclass(frozen=True)
class PoolingConfig:
    """Pooling mode, whether vectors are L2-normalised, and the longest input in tokens."""

    mode: PoolingMode = "mean"
    normalize: bool = True
    max_seq_length: int | None = None


def _read_json(path: Path) -> object:
    with path.open(encoding="utf-8") as file:
        return json.load(file)


def _pooling_mode(folder: Path, modules: list[dict[str, str]]) -> PoolingMode:
    pooling = [m for m in modules if m.get("type", "").endswith(".Pooling")]
    config_path = folder / (pooling[0].get("path", "1_Pooling") if pooling else "1_Pooling")
    config_file = config_path / "config.json"
    if not config_file.is_file():
        return "mean"
    config = _read_json(config_file)
    if not isinstance(config, dict):
        return "mean"
    for flag, mode in _POOLING_FLAGS:
        if config.get(flag):
            return mode
    return "mean"


def _max_seq_length(folder: Path) -> int | None:
    config_file = folder / "sentence_bert_config.json"
    if not config_file.is_file():
        return None
    config = _read_json(config_file)
    value = config.get("max_seq_length") if isinstance(config, dict) else None
    return value if isinstance(value, int) else None


def read_pooling_config(folder: Path) -> PoolingConfig:
    """The folder's sentence-transformers settings; mean pooling + normalise when it has none."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return PoolingConfig(max_seq_length=_max_seq_length(folder))
    raw = _read_json(modules_file)
    modules = [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    return PoolingConfig(
        mode=_pooling_mode(folder, modules),
        normalize=normalize,
        max_seq_length=_max_seq_length(folder),
    )


def is_embedding_config(model: ModelConfig) -> bool:
    """Whether `model` is served by the EncoderBackend: said so, or a sentence-transformers folder.

    `kind: auto` looks only at cheap signs (the built-in embedding name, a local folder with
    modules.json); anything else is a chat model unless the config says `kind: embedding`.
    """
    if model.kind != "auto":
        return model.kind == "embedding"
    if model.source == BUILTIN_EMBEDDING_MODEL:
        return True
    return (Path(model.source).expanduser() / "modules.json").is_file()

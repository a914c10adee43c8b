"""Frozen configuration dataclasses: one `ServerConfig` for every mode.

Built in one place (the CLI, or `load_config_file` from YAML), passed down, never mutated.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BUILTIN_CHAT_MODEL = "llmserve/tiny-chat"
BUILTIN_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

BackendKind = Literal["local", "fake"]
ModelKindSetting = Literal["auto", "chat", "embedding"]


def default_home() -> Path:
    """`$LLMSERVE_HOME`, else `~/.cache/llmserve`."""
    env = os.environ.get("LLMSERVE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmserve"


@dataclass(frozen=True)
class EngineConfig:
    """The continuous-batching engine's limits."""

    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512  # token budget per step: decodes first, then prefill chunks
    block_size: int = 16
    kv_cache_memory_mb: int = 512
    num_threads: int | None = None  # torch threads; None keeps torch's default
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    enable_prefix_caching: bool = True  # reuse the KV blocks of prompt prefixes seen before
    quantization: Literal["none", "int8"] = "none"  # int8: Linear weights int8 (CPU, fbgemm)

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "kv_cache_memory_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        if self.quantization == "int8" and self.dtype != "float32":
            raise ValueError("quantization int8 computes in float32: set dtype to float32")


@dataclass(frozen=True)
class ModelConfig:
    """One served model: the name clients use and where its weights come from."""

    name: str
    source: str  # hub id, local folder, or a built-in name (BUILTIN_CHAT_MODEL)
    kind: ModelKindSetting = "auto"
    backend: BackendKind = "local"
    chat_template: str | None = None  # a built-in name ("llama-2", "chatml"), or Jinja text
    max_model_len: int | None = None
    revision: str | None = None
    public: bool = True  # listed by GET /v1/models for anonymous callers (see DESIGN.md)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if not self.source:
            raise ValueError("source must not be empty")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ValueError("max_model_len must be at least 16")


@dataclass(frozen=True)
class AuthConfig:
    """API keys, per-key limits and the admission queue."""

    state: str = "sqlite"  # "sqlite" (a file in home) or a redis:// URL
    no_auth: bool = False  # allow serving without keys on a non-loopback host
    admin_key: str | None = None  # guards /admin; also read from LLMSERVE_ADMIN_KEY
    default_max_concurrency: int = 30
    max_queue: int = 256  # waiting requests across all keys before 503
    lease_seconds: float = 30.0  # a slot held by a dead process expires after this (redis)
    request_timeout_s: float = 600.0  # a generation running longer is aborted: 504

    def __post_init__(self) -> None:
        if not (self.state == "sqlite" or self.state.startswith(("redis://", "rediss://"))):
            raise ValueError("state must be 'sqlite' or a redis:// URL")
        if self.default_max_concurrency < 1:
            raise ValueError("default_max_concurrency must be at least 1")
        if self.max_queue < 0:
            raise ValueError("max_queue must be non-negative")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")


@dataclass(frozen=True)
class ServerConfig:
    """Everything `llmserve serve` needs."""

    models: tuple[ModelConfig, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    home: Path = field(default_factory=default_home)
    engine: EngineConfig = field(default_factory=EngineConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models must name at least one model")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")


def builtin_model_config() -> ModelConfig:
    """The model `llmserve serve` starts with when none is named."""
    return ModelConfig(name=BUILTIN_CHAT_MODEL, source=BUILTIN_CHAT_MODEL)


class ConfigError(ValueError):
    """A config file with mistakes; `problems` lists each as "field.path: what is wrong"."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {source}:\n{lines}")


def load_config_file(path: str | Path) -> ServerConfig:
    """A `ServerConfig` from YAML; raises `ConfigError` naming every wrong field.

    `models` may be left out: the built-in chat model is then served.
    """
    import yaml  # NOTE: imported here so that importing config stays cheap

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if isinstance(data, dict) and "models" not in data:
        data["models"] = [{"name": BUILTIN_CHAT_MODEL, "source": BUILTIN_CHAT_MODEL}]
    problems: list[str] = []
    config = _build(ServerConfig, data, "", problems)
    if problems or not isinstance(config, ServerConfig):
        raise ConfigError(str(path), problems or ["not a server config"])
    return config


def _build(cls: type, data: object, path: str, problems: list[str]) -> object:
    """An instance of dataclass `cls` from a mapping, recording problems instead of raising."""
    where = path or "the top level"
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping of fields, got {_kind(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    num_before = len(problems)
    for key in data:
        if key not in fields:
            problems.append(f"{_join(path, str(key))}: unknown field; allowed: {', '.join(fields)}")
    kwargs: dict[str, object] = {}
    for name, spec in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name), problems)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            problems.append(f"{_join(path, name)}: required")
    if len(problems) > num_before:
        return None
    try:
        return cls(**kwargs)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _convert(hint: object, value: object, path: str, problems: list[str]) -> object:
    """`value` checked against the type `hint`; a problem is recorded when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        problems.append(f"{path}: {value!r} is not allowed; allowed: {allowed}")
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_convert(args[0], v, f"{path}.{i}", problems) for i, v in enumerate(value))
        problems.append(f"{path}: expected a list, got {_kind(value)}")
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, path, problems)
    elif hint is Path:
        if isinstance(value, str):
            return Path(value).expanduser()
        problems.append(f"{path}: expected a path (text), got {_kind(value)}")
    elif _fits(hint, value):
        return float(value) if hint is float else value  # type: ignore[arg-type]
    else:
        problems.append(f"{path}: expected {_NAMES.get(hint, str(hint))}, got {_kind(value)}")
    return None


_NAMES: dict[object, str] = {
    int: "an integer",
    float: "a number",
    str: "text",
    bool: "true or false",
}


def _fits(hint: object, value: object) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: f"text {value!r}", bool: f"{value}"}.get(
        type(value), repr(value)
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name

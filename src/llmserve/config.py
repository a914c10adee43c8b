"""Frozen configuration dataclasses: one `ServerConfig` for every mode.

Built in one place (the CLI, or `load_config_file` from YAML), passed down, never mutated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BUILTIN_CHAT_MODEL = "llmserve/tiny-chat"
BUILTIN_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

BackendKind = Literal["local", "vllm", "fake"]
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

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "kv_cache_memory_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("num_threads must be at least 1")


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
    request_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not (self.state == "sqlite" or self.state.startswith(("redis://", "rediss://"))):
            raise ValueError("state must be 'sqlite' or a redis:// URL")
        if self.default_max_concurrency < 1:
            raise ValueError("default_max_concurrency must be at least 1")
        if self.max_queue < 0:
            raise ValueError("max_queue must be non-negative")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")


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

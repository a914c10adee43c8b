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

from llmserve.scale_config import AutoscalingConfig as AutoscalingConfig
from llmserve.scale_config import IngressConfig as IngressConfig
from llmserve.scale_config import RayConfig as RayConfig
from llmserve.scale_config import RuntimeKind as RuntimeKind
from llmserve.scale_config import VariantConfig as VariantConfig
from llmserve.scale_config import check_unique

BUILTIN_CHAT_MODEL = "llmserve/tiny-chat"
# The tool-call formats of structured/tool_formats.py (a model's `tool_call_parser`)
TOOL_CALL_PARSERS = ("hermes", "llama3_json", "mistral", "mistral_args")
BUILTIN_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

BackendKind = Literal["local", "fake"]
IN_PROCESS = "in-process"  # auth.limit_store: per-key limits counted by this process alone

# Fields that moved: their old spelling is refused with the new one named.
RENAMED_FIELDS = {
    "auth.state": "auth.limit_store ('in-process' or a redis:// URL)",
    "auth.max_queue": "limits.max_queue",
    "auth.request_timeout_s": "limits.request_timeout_s",
}
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
    num_threads: int | None = None  # torch threads; None: OMP_NUM_THREADS, else physical cores
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_share: float = 0.5  # at most this share of max_num_seqs runs batch-priority work
    enable_prefix_caching: bool = True  # reuse the KV blocks of prompt prefixes seen before
    quantization: Literal["none", "int8"] = "none"  # int8: Linear weights int8 (CPU, fbgemm)
    # decode attention: auto (compiled in-place kernel if it builds, else gather) | kernel | gather
    decode_attention: Literal["auto", "kernel", "gather"] = "auto"

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "kv_cache_memory_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.batch_share <= 1:
            raise ValueError("batch_share must be in (0, 1]")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        if self.decode_attention not in ("auto", "kernel", "gather"):
            raise ValueError("decode_attention must be one of auto, kernel, gather")
        if self.quantization == "int8" and self.dtype != "float32":
            raise ValueError("quantization int8 computes in float32: set dtype to float32")

    @property
    def max_batch_seqs(self) -> int:
        """How many sequences of batch priority may run at once (at least one)."""
        return max(1, int(self.max_num_seqs * self.batch_share))


@dataclass(frozen=True)
class ModelConfig:
    """One served model: the name clients use and where its weights come from.

    A model has one `source`, or `variants` (a weighted canary: each its own source).
    `replicas` / `autoscaling` / `num_cpus` are used by the Ray runtime (`runtime: ray`).
    """

    name: str
    source: str = ""  # hub id, local folder, or a built-in name (BUILTIN_CHAT_MODEL)
    kind: ModelKindSetting = "auto"
    backend: BackendKind = "local"
    chat_template: str | None = None  # a built-in name ("llama-2", "chatml"), or Jinja text
    max_model_len: int | None = None
    revision: str | None = None
    public: bool = True  # listed by GET /v1/models for anonymous callers (docs/architecture.md)
    replicas: int | None = None  # engine replicas (Ray); None: 1, or autoscaling's
    autoscaling: AutoscalingConfig | None = None
    variants: tuple[VariantConfig, ...] = ()
    num_cpus: float = 1.0  # CPUs each engine replica declares to Ray; also its torch threads
    fake_token_delay_s: float = 0.0  # backend "fake" only: seconds per token (demos, tests)
    # The tool-call format (vLLM's --tool-call-parser); None: read from the template/tokenizer
    tool_call_parser: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if bool(self.source) == bool(self.variants):
            raise ValueError(f"model {self.name}: give either a source or variants (not both)")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ValueError("max_model_len must be at least 16")
        if self.tool_call_parser is not None and self.tool_call_parser not in TOOL_CALL_PARSERS:
            raise ValueError(
                f"model {self.name}: tool_call_parser must be one of {', '.join(TOOL_CALL_PARSERS)}"
            )
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError(f"model {self.name}: give replicas or autoscaling, not both")
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"model {self.name}: replicas must be at least 1")
        if self.num_cpus <= 0:
            raise ValueError(f"model {self.name}: num_cpus must be positive")
        check_unique(f"model {self.name}: variant names", [v.name for v in self.variants])
        if self.fake_token_delay_s < 0:
            raise ValueError("fake_token_delay_s must be non-negative")

    @property
    def variant_models(self) -> tuple[ModelConfig, ...]:
        """One plain model per variant, each served under this model's name."""
        return tuple(
            dataclasses.replace(self, source=v.source, revision=v.revision, variants=())
            for v in self.variants
        )

    @property
    def threads_per_replica(self) -> int:
        """Torch threads of one engine replica: its declared CPUs, at least one."""
        return max(1, int(self.num_cpus))


@dataclass(frozen=True)
class AuthConfig:
    """API keys and where their per-key limits are counted."""

    # Where slots and rate windows live: "in-process" (this process only) or a redis:// URL
    # shared by every server process. (Keys and usage are always in SQLite in `home`.)
    limit_store: str = IN_PROCESS
    no_auth: bool = False  # allow serving without keys on a non-loopback host
    admin_key: str | None = None  # guards /admin; also read from LLMSERVE_ADMIN_KEY
    default_max_concurrency: int = 30
    lease_seconds: float = 30.0  # a slot held by a dead process expires after this (redis)

    def __post_init__(self) -> None:
        if not (self.limit_store == IN_PROCESS or is_redis_url(self.limit_store)):
            raise ValueError(f"limit_store must be '{IN_PROCESS}' or a redis:// URL")
        if self.default_max_concurrency < 1:
            raise ValueError("default_max_concurrency must be at least 1")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")

    @property
    def redis_url(self) -> str | None:
        """The Redis URL shared limits live at, or None when they are counted in process."""
        return None if self.limit_store == IN_PROCESS else self.limit_store


def is_redis_url(value: str) -> bool:
    """True for a redis:// or rediss:// URL."""
    return value.startswith(("redis://", "rediss://"))


@dataclass(frozen=True)
class LimitsConfig:
    """What one request may cost the server: its body, its wait, its run time."""

    max_request_body_mb: float = 8.0  # a larger body is refused with 413, unread
    body_timeout_s: float = 30.0  # a body that has not arrived by then gets 408
    max_queue: int = 256  # requests waiting for a model (all keys) before 503
    request_timeout_s: float = 600.0  # a generation running longer is aborted: 504

    def __post_init__(self) -> None:
        if self.max_queue < 0:
            raise ValueError("max_queue must be non-negative")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")
        if not 0 < self.max_request_body_mb <= 1024:
            raise ValueError("max_request_body_mb must be in (0, 1024]")
        if self.body_timeout_s <= 0:
            raise ValueError("body_timeout_s must be positive")

    @property
    def max_request_body_bytes(self) -> int:
        """The body limit in bytes."""
        return int(self.max_request_body_mb * 2**20)


@dataclass(frozen=True)
class MetricsConfig:
    """GET /metrics: Prometheus families under `llmserve:` (see metrics.py)."""

    per_key: bool = True  # label per-key families by key id; false folds every key into "all"
    require_admin_key: bool = False  # true: /metrics needs the admin key, as /admin does


@dataclass(frozen=True)
class LogConfig:
    """Server logs on stderr: timestamped, one line per request."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"  # json: one object per line, for log collectors


@dataclass(frozen=True)
class JobsConfig:
    """The Files and Batch APIs and background responses (the durable job store in `home`)."""

    max_file_mb: float = 200.0  # a larger upload is refused with 400
    max_lines: int = 50_000  # lines of one batch input file (more: too_many_tasks)
    lease_s: float = 30.0  # a batch or response held by a dead process is taken up after this
    max_concurrent_lines: int = 64  # batch lines one runner keeps in the backend at once
    max_enqueued_tokens_per_key: int | None = None  # batch tokens queued per key; None: no limit
    default_line_max_tokens: int = 256  # what a line without max_tokens is estimated at
    # Issue 18b: storage limits and expiry.
    max_storage_mb_per_key: float = 10_240.0  # files a key may keep (keys create --max-storage-mb)
    min_file_expiry_s: float = 3600.0  # shortest `expires_after.seconds` (OpenAI: 3600)
    response_ttl_days: float = 30.0  # stored responses and their events are deleted after this
    sweep_interval_s: float = 60.0  # how often expired files and responses are deleted

    def __post_init__(self) -> None:
        if not 0 < self.max_file_mb <= 1_000_000:
            raise ValueError("max_file_mb must be positive")
        for name in ("max_storage_mb_per_key", "min_file_expiry_s", "response_ttl_days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.sweep_interval_s <= 0:
            raise ValueError("sweep_interval_s must be positive")
        for name in ("max_lines", "max_concurrent_lines", "default_line_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.lease_s <= 0:
            raise ValueError("lease_s must be positive")
        if self.max_enqueued_tokens_per_key is not None and self.max_enqueued_tokens_per_key < 1:
            raise ValueError("max_enqueued_tokens_per_key must be at least 1")

    @property
    def max_file_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_file_mb * 2**20)

    @property
    def response_ttl_s(self) -> float:
        """How long a stored response is kept, in seconds."""
        return self.response_ttl_days * 86_400


@dataclass(frozen=True)
class StructuredConfig:
    """Constrained decoding: what compiled grammars may cost (structured/)."""

    cache_mb: float = 256.0  # compiled grammars kept, by their measured size
    compile_timeout_s: float = 10.0  # a grammar compiling longer is a 400

    def __post_init__(self) -> None:
        if self.cache_mb < 0:
            raise ValueError("cache_mb must be non-negative")
        if self.compile_timeout_s <= 0:
            raise ValueError("compile_timeout_s must be positive")


@dataclass(frozen=True)
class ServerConfig:
    """Everything `llmserve serve` needs."""

    models: tuple[ModelConfig, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    home: Path = field(default_factory=default_home)
    engine: EngineConfig = field(default_factory=EngineConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    shutdown_timeout_s: float = 30.0  # on SIGTERM, requests in flight get this long to finish
    runtime: RuntimeKind = "local"
    ingress: IngressConfig = field(default_factory=IngressConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    structured: StructuredConfig = field(default_factory=StructuredConfig)
    # Issue 18b: whom the server answers (api/host_guard.py). The server's own host and loopback
    # names are always allowed; an Origin other than the server's own needs to be listed.
    allowed_hosts: tuple[str, ...] = ()  # more `Host` names; "*" allows any
    cors_origins: tuple[str, ...] = ()  # e.g. "http://localhost:3000"; "*" allows any

    def __post_init__(self) -> None:
        if self.shutdown_timeout_s < 0:
            raise ValueError("shutdown_timeout_s must be non-negative")
        if not self.models:
            raise ValueError("models must name at least one model")
        check_unique("model names", [m.name for m in self.models])
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
        where_key = _join(path, str(key))
        if where_key in RENAMED_FIELDS:
            problems.append(f"{where_key}: this field moved; use {RENAMED_FIELDS[where_key]}")
        elif key not in fields:
            problems.append(f"{where_key}: unknown field; allowed: {', '.join(fields)}")
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

"""Frozen configuration dataclasses, one per section: one `ServerConfig` for every mode.

Built in one place (`loader.py`, from YAML and command-line overrides), passed down, never
mutated. Each section validates its own fields in `__post_init__`; rules across sections are
checked by `ServerConfig`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
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


class BackendKind(enum.StrEnum):
    """What runs a model: llmserve's engine (or the encoder, for embeddings), or the fake."""

    LOCAL = "local"
    FAKE = "fake"  # canned text at a set pace (demos, tests)


DATABASE_PREFIXES = ("sqlite:///", "postgresql://", "postgres://")
IN_PROCESS = "in-process"  # auth.limit_store: per-key limits counted by this process alone

ModelKindSetting = Literal["auto", "chat", "embedding"]
# JSON answers and tool-call arguments: "compact" as OpenAI writes them, or whitespace allowed
JsonWhitespace = Literal["compact", "flexible"]


def default_database() -> str | None:
    """`$LLMSERVE_DATABASE_URL`, else None (SQLite files in the home)."""
    return os.environ.get("LLMSERVE_DATABASE_URL") or None


def default_home() -> Path:
    """`$LLMSERVE_HOME`, else `~/.cache/llmserve`."""
    env = os.environ.get("LLMSERVE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmserve"


@dataclass(frozen=True)
class SpeculativeConfig:
    """Draft tokens verified in one forward pass (`engine.speculative`).

    A request's `prediction` always drafts; `method: ngram` (prompt lookup) drafts for the other
    sequences, but only while at most `max_running` sequences run: at larger batches the step is
    busy with real tokens and verifying drafts would only slow it.
    """

    method: Literal["none", "ngram"] = "none"
    num_tokens: int = 4  # n-gram drafts per step
    max_running: int = 4  # n-gram speculation only while at most this many sequences run
    prediction_num_tokens: int = 16  # drafts per step from a request's `prediction`

    def __post_init__(self) -> None:
        for name in ("num_tokens", "max_running", "prediction_num_tokens"):
            if not 1 <= getattr(self, name) <= 256:
                raise ValueError(f"speculative.{name} must be between 1 and 256")


@dataclass(frozen=True)
class EngineConfig:
    """The continuous-batching engine's limits."""

    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512  # token budget per step: decodes first, then prefill chunks
    block_size: int = 16
    kv_cache_memory_mb: int = 512
    # The one torch-threads setting, of every engine. None: OMP_NUM_THREADS, else the physical
    # cores; on Ray a replica's declared `num_cpus` (models[].num_cpus).
    num_threads: int | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_share: float = 0.5  # at most this share of max_num_seqs runs batch-priority work
    enable_prefix_caching: bool = True  # reuse the KV blocks of prompt prefixes seen before
    quantization: Literal["none", "int8"] = "none"  # int8: Linear weights int8 (CPU, fbgemm)
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    # decode attention: auto (compiled in-place kernel if it builds, else gather) | kernel | gather
    decode_attention: Literal["auto", "kernel", "gather"] = "auto"
    # KV cache element type: auto (the model's dtype) | bfloat16 (half a float32 cache's bytes)
    # | int8 (a quarter, plus one float32 scale per slot and KV head)
    kv_cache_dtype: Literal["auto", "bfloat16", "int8"] = "auto"
    # decode steps (up to 64 rows) in one native call (int8 Llama-like models): auto | on | off
    lean_decode: Literal["auto", "on", "off"] = "auto"

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
        if self.lean_decode not in ("auto", "on", "off"):
            raise ValueError(f"lean_decode must be one of auto, on, off, not {self.lean_decode!r}")
        if self.kv_cache_dtype not in ("auto", "bfloat16", "int8"):
            raise ValueError(
                f"kv_cache_dtype must be auto (the model's dtype), bfloat16 or int8, "
                f"not {self.kv_cache_dtype!r}"
            )
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
    backend: BackendKind = BackendKind.LOCAL
    chat_template: str | None = None  # a built-in name ("llama-2", "chatml"), or Jinja text
    max_model_len: int | None = None
    revision: str | None = None
    public: bool = True  # listed by GET /v1/models for anonymous callers (docs/architecture.md)
    replicas: int | None = None  # engine replicas (Ray); None: 1, or autoscaling's
    autoscaling: AutoscalingConfig | None = None
    variants: tuple[VariantConfig, ...] = ()
    num_cpus: float = 1.0  # CPUs each engine replica declares to Ray (its default torch threads)
    fake_token_delay_s: float = 0.0  # backend "fake" only: seconds per token (demos, tests)
    # The tool-call format (vLLM's --tool-call-parser); None: read from the template/tokenizer
    tool_call_parser: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        # NOTE: "fake" given as text (YAML, code) becomes the member, so the field is typed true
        object.__setattr__(self, "backend", BackendKind(self.backend))
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
        """Torch threads of one Ray engine replica unless `engine.num_threads` is set: its
        declared CPUs, at least one."""
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
    # Storage limits and expiry.
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
    whitespace: JsonWhitespace = "compact"  # flexible: whitespace allowed between JSON tokens

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
    # Whom the server answers (api/http/host_guard.py). The server's own host and loopback
    # names are always allowed; an Origin other than the server's own needs to be listed.
    allowed_hosts: tuple[str, ...] = ()  # more `Host` names; "*" allows any
    cors_origins: tuple[str, ...] = ()  # e.g. "http://localhost:3000"; "*" allows any
    # Where keys, usage and jobs live: None (SQLite files in `home`), sqlite:///PATH
    # or postgresql://USER:PASSWORD@HOST:PORT/DB (shared by every process and node).
    database: str | None = field(default_factory=default_database)

    def __post_init__(self) -> None:
        if self.database is not None and not self.database.startswith(DATABASE_PREFIXES):
            raise ValueError(
                "database must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
            )
        if self.shutdown_timeout_s < 0:
            raise ValueError("shutdown_timeout_s must be non-negative")
        if not self.models:
            raise ValueError("models must name at least one model")
        check_unique("model names", [m.name for m in self.models])
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")
        self._check_shared_limits()

    def _check_shared_limits(self) -> None:
        """Several ingress replicas must count per-key limits in one shared store (Redis)."""
        if self.ingress.replicas > 1 and self.auth.redis_url is None:
            raise ValueError(
                f"ingress.replicas is {self.ingress.replicas}, but per-key limits are counted in "
                "process, so each replica would allow a key its whole limit: give a shared store "
                "with auth.limit_store: redis://HOST:PORT/DB (on the command line: --state "
                "redis://HOST:PORT/DB)"
            )


def builtin_model_config() -> ModelConfig:
    """The model `llmserve serve` starts with when none is named."""
    return ModelConfig(name=BUILTIN_CHAT_MODEL, source=BUILTIN_CHAT_MODEL)

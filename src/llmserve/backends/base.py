"""The `Backend` protocol: the only thing the API layer knows about model execution.

Every backend (the local engine, vLLM, a Ray Serve handle, the fake used by API tests) serves one
model and implements this protocol. The API layer tokenizes and renders prompts through it so that
usage numbers and context checks are exact before the first byte of a response is sent.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "abort"]
ModelKind = Literal["chat", "embedding"]

# Sampling bounds (OpenAI's ranges where it has one; vLLM's temperature rule).
SEED_RANGE = (-(2**63), 2**63 - 1)  # a signed 64-bit integer, as OpenAI and vLLM accept
MAX_PENALTY = 2.0  # presence_penalty and frequency_penalty lie in [-2, 2]
REPETITION_PENALTY_RANGE = (0.01, 100.0)  # 1 disables it; the bounds keep logits / penalty finite
MAX_N = 128
MAX_LOGPROBS = 20  # OpenAI's top_logprobs limit
GREEDY_TEMPERATURE = 1e-5  # below it, sampling is argmax
MIN_SAMPLING_TEMPERATURE = 1e-2  # smaller ones overflow float32 logits, so they are raised to it


class Priority(enum.IntEnum):
    """Admission class: lower values are scheduled first."""

    INTERACTIVE = 0
    BATCH = 1


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one request. Defaults follow the OpenAI API."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None  # None: no logprobs; k >= 0: the sampled token plus k top ones

    def __post_init__(self) -> None:
        # NOTE: every value is bounded so the sampler's float32 arithmetic stays finite; one
        # request's parameters must never be able to fail a batch it shares with others.
        _check_int("max_tokens", self.max_tokens, 1)
        _check_number("temperature", self.temperature, 0.0, math.inf)
        _check_number("top_p", self.top_p, 0.0, 1.0, low_is_open=True)
        _check_int("top_k", self.top_k, 0)
        _check_number("min_p", self.min_p, 0.0, 1.0)
        _check_number("presence_penalty", self.presence_penalty, -MAX_PENALTY, MAX_PENALTY)
        _check_number("frequency_penalty", self.frequency_penalty, -MAX_PENALTY, MAX_PENALTY)
        _check_number("repetition_penalty", self.repetition_penalty, *REPETITION_PENALTY_RANGE)
        _check_int("n", self.n, 1, MAX_N)
        if self.seed is not None:
            _check_int("seed", self.seed, *SEED_RANGE)
        if self.logprobs is not None:
            _check_int("logprobs", self.logprobs, 0, MAX_LOGPROBS)

    @property
    def is_greedy(self) -> bool:
        """True when sampling reduces to argmax (vLLM's rule: temperature below 1e-5 is 0)."""
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def sampling_temperature(self) -> float:
        """The temperature the sampler divides by: at least MIN_SAMPLING_TEMPERATURE (as vLLM)."""
        return max(float(self.temperature), MIN_SAMPLING_TEMPERATURE)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """ValueError unless `value` is an int (not a bool) in [low, high]."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and low <= value
        and (high is None or value <= high)
    ):
        return
    bounds = f">= {low}" if high is None else f"between {low} and {high}"
    raise ValueError(f"{name} must be an integer {bounds}")


def _check_number(
    name: str, value: object, low: float, high: float, *, low_is_open: bool = False
) -> None:
    """ValueError unless `value` is a finite real number in [low, high] ((low, high] if open)."""
    number = _as_float(value)
    above_low = number > low if low_is_open else number >= low
    if not (math.isfinite(number) and above_low and number <= high):
        raise ValueError(f"{name} must be a finite number {_interval(low, high, low_is_open)}")


def _as_float(value: object) -> float:
    """`value` as a float; NaN when it is no real number (a bool, a string) or too big for one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _interval(low: float, high: float, low_is_open: bool) -> str:
    if high == math.inf:
        return f">= {low:g}"
    return f"in ({low:g}, {high:g}]" if low_is_open else f"between {low:g} and {high:g}"


@dataclass(frozen=True)
class GenerateRequest:
    """One generation request, already tokenized and validated."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams
    priority: Priority = Priority.INTERACTIVE
    tenant: str = ""  # the API key's id: the scheduler admits waiting requests round-robin by it


@dataclass(frozen=True)
class TopLogprob:
    """One candidate token at a position, with its log-probability."""

    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token at a position, its log-probability and the top alternatives."""

    token_id: int
    token: str
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class GenerateOutput:
    """What one engine step produced for one sequence (choice) of a request.

    `text` and `token_ids` are deltas since the previous output of the same `index`. The last
    output of each index has `finish_reason` set; its `text` never contains a matched stop string.
    """

    request_id: str
    index: int
    text: str
    token_ids: tuple[int, ...]
    num_prompt_tokens: int
    num_output_tokens: int  # cumulative for this index
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    queue_time_s: float | None = None  # how long the request waited before it first ran


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a batch of inputs, in input order, and the tokens they took."""

    vectors: list[list[float]]
    num_prompt_tokens: int


@dataclass(frozen=True)
class ChatMessage:
    """A message ready for a chat template: role and plain-text content."""

    role: str
    content: str


@dataclass(frozen=True)
class ModelInfo:
    """What the API layer needs to know about a served model."""

    name: str
    kind: ModelKind
    max_model_len: int
    owned_by: str = "llmserve"
    created: int = 0
    source: str = ""
    # The most characters one token stands for (None: unknown); bounds the cost of huge prompts.
    max_chars_per_token: int | None = None


@dataclass(frozen=True)
class BackendLoad:
    """A snapshot of work in the backend, for admission and /health."""

    num_running: int
    num_waiting: int
    waiting_by_tenant: dict[str, int] = field(default_factory=dict)
    max_running: int | None = None  # requests it runs at once, when fixed; None: unknown
    kv_cache_usage: float = 0.0  # fraction of KV-cache blocks in use (0 without a KV cache)
    num_preemptions: int = 0  # since start: sequences evicted to make room, to recompute later


class UnsupportedOperationError(Exception):
    """Raised by a backend asked for work its model kind cannot do (embed on a chat model)."""


@runtime_checkable
class Backend(Protocol):
    """Serves one model.

    Contract:
    - `start()` loads the model and starts any background loop; `shutdown()` stops it and fails
      every request in flight with finish_reason "abort".
    - `generate()` returns an async iterator of `GenerateOutput`. If the consumer stops early
      (it calls `aclose()`, or the task is cancelled), the backend aborts the request and frees
      its resources before `aclose()` returns. `abort(request_id)` does the same from outside.
    - `encode`, `decode` and `render_chat` are synchronous, cheap and thread-safe; the API layer
      uses them to count tokens exactly before admitting a request.
    - `embed()` raises `UnsupportedOperationError` on chat models; `generate()` and `render_chat`
      raise it on embedding models.
    """

    @property
    def info(self) -> ModelInfo: ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text for `messages`, ending with the generation prompt for the assistant."""
        ...

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]: ...

    async def abort(self, request_id: str) -> None: ...

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult: ...

    def load(self) -> BackendLoad: ...

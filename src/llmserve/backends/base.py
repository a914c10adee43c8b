"""The `Backend` protocol: the only thing the API layer knows about model execution.

Every backend (the local engine, vLLM, a Ray Serve handle, the fake used by API tests) serves one
model and implements this protocol. The API layer tokenizes and renders prompts through it so that
usage numbers and context checks are exact before the first byte of a response is sent.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "abort"]
ModelKind = Literal["chat", "embedding"]


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
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be non-negative")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (disabled) or positive")
        if not 0 <= self.min_p <= 1:
            raise ValueError("min_p must be in [0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be positive")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError("logprobs must be non-negative")

    @property
    def is_greedy(self) -> bool:
        """True when sampling reduces to argmax."""
        return self.temperature == 0 or self.top_k == 1


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
    num_cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache


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


@dataclass(frozen=True)
class BackendLoad:
    """A snapshot of work in the backend, for admission and /health."""

    num_running: int
    num_waiting: int
    waiting_by_tenant: dict[str, int] = field(default_factory=dict)
    max_running: int | None = None  # requests it runs at once, when fixed; None: unknown


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

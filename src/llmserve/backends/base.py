"""The `Backend` protocol: the only thing the API layer knows about model execution.

Every backend (the local engine, vLLM, a Ray Serve handle, the fake used by API tests) serves one
model and implements this protocol. The API layer tokenizes and renders prompts through it so that
usage numbers and context checks are exact before the first byte of a response is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from llmserve.types import (
    BackendLoad,
    ChatMessage,
    EmbeddingResult,
    GenerateOutput,
    GenerateRequest,
    GrammarSpec,
    ModelInfo,
)


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
    - `compile_grammar(spec)` compiles a grammar for this model's tokenizer and caches it, or
      raises `ValueError` saying what is wrong with it; CPU-bound, so callers on an event loop run
      it in a worker thread. `generate()` of a request whose grammar compiled starts at once.
    - `embed()` raises `UnsupportedOperationError` on chat models; `generate()` and `render_chat`
      raise it on embedding models.
    - `canary` is None, except on a model served through weighted variants: then callers resolve
      the variant first (serving/routing.py) and tokenize and generate on its backend alone.
    """

    @property
    def canary(self) -> Canary | None: ...

    @property
    def info(self) -> ModelInfo: ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """The prompt for `messages` (and the tools offered), ending with the assistant's turn."""
        ...

    def compile_grammar(self, spec: GrammarSpec) -> None: ...

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]: ...

    async def abort(self, request_id: str) -> None: ...

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult: ...

    def load(self) -> BackendLoad: ...


class Canary(Protocol):
    """A model served through weighted variants, each its own backend (backends/variants.py)."""

    @property
    def name(self) -> str:
        """The served model name."""
        ...

    @property
    def weights(self) -> dict[str, float]:
        """The current weight of each variant, in config order."""
        ...

    @property
    def variants(self) -> Mapping[str, Backend]:
        """Each variant's own backend, by variant name."""
        ...

    async def choose(self, key: str | None) -> tuple[str, Backend]:
        """The variant for caller `key` (sticky; None: anonymous, drawn by weight)."""
        ...

    async def set_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Change the weights live (ValueError when they do not name each variant once)."""
        ...

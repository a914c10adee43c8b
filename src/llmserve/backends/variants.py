"""`VariantBackend`: one served model name, several variants, each its own backend and weight.

HTTP routes and job runners resolve a request's variant once (`serving/routing.resolve_backend`
calls `choose(key)`) and then talk to that variant's backend alone (its tokenizer, its engine),
so usage and context checks are exact for the variant that runs the request; this backend's own
text and generation members refuse to guess. Weights change live with `set_weights`; with a shared
`CanaryBoard` (several ingress processes on Ray) each process picks up a change within
`SYNC_INTERVAL_S`, and a key meets the same variant whichever process serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from llmserve.backends.base import Backend, Canary
from llmserve.backends.canary import (
    CanaryBoard,
    LocalBoard,
    check_weights,
    random_point,
    variant_at,
)
from llmserve.types import (
    BackendLoad,
    ChatMessage,
    EmbeddingResult,
    GenerateOutput,
    GenerateRequest,
    GrammarSpec,
    ModelInfo,
)

SYNC_INTERVAL_S = 1.0
logger = logging.getLogger(__name__)


class VariantBackend:
    """Serves one model through weighted variants; a key meets the same variant every time."""

    def __init__(
        self,
        name: str,
        variants: Mapping[str, Backend],
        weights: Mapping[str, float],
        board: CanaryBoard | None = None,
    ) -> None:
        self.name = name
        self.variants = dict(variants)
        self._weights = check_weights(self.variants, weights)
        self._board = board or LocalBoard()
        self._is_shared = board is not None
        self._key_to_point: dict[str, float] = {}  # NOTE: a key's point never changes: cache it
        self._sync: asyncio.Task[None] | None = None

    @property
    def canary(self) -> Canary:
        """This backend: its variants, weights and chooser."""
        return self

    @property
    def weights(self) -> dict[str, float]:
        """The current weight of each variant, in config order."""
        return dict(self._weights)

    async def choose(self, key: str | None) -> tuple[str, Backend]:
        """The variant for caller `key` (None: anonymous, drawn by weight) and its backend."""
        variant = variant_at(self._weights, await self._point(key))
        return variant, self.variants[variant]

    async def _point(self, key: str | None) -> float:
        if key is None:
            return random_point()
        if key not in self._key_to_point:
            self._key_to_point[key] = await self._board.key_point(key)
        return self._key_to_point[key]

    async def set_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Change the weights live (ValueError when they do not name each variant once)."""
        checked = check_weights(self._weights, weights)
        await self._board.write_weights(self.name, checked)
        self._weights = checked
        return dict(checked)

    @property
    def info(self) -> ModelInfo:
        return self._first.info

    async def start(self) -> None:
        for backend in self.variants.values():
            await backend.start()
        if self._is_shared:
            await self._adopt()  # an ingress replica that restarts keeps the live weights
            self._sync = asyncio.create_task(self._follow_board())

    async def shutdown(self) -> None:
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
        for backend in self.variants.values():
            await backend.shutdown()

    # NOTE: text and generation belong to one variant: callers resolve it first
    # (serving/routing.resolve_backend) and use its backend, never this one.
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        raise self._unresolved("encode")

    def decode(self, token_ids: Sequence[int]) -> str:
        raise self._unresolved("decode")

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        raise self._unresolved("render_chat")

    def compile_grammar(self, spec: GrammarSpec) -> None:
        raise self._unresolved("compile_grammar")

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        raise self._unresolved("generate")

    async def abort(self, request_id: str) -> None:
        for backend in self.variants.values():
            await backend.abort(request_id)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        raise self._unresolved("embed")

    def load(self) -> BackendLoad:
        loads = [backend.load() for backend in self.variants.values()]
        replicas = [load.num_replicas for load in loads]
        return BackendLoad(
            num_running=sum(load.num_running for load in loads),
            num_waiting=sum(load.num_waiting for load in loads),
            num_replicas=None if None in replicas else sum(r or 0 for r in replicas),
        )

    def _unresolved(self, member: str) -> RuntimeError:
        return RuntimeError(
            f"{member} on canary model {self.name}: resolve its variant first "
            "(serving/routing.resolve_backend)"
        )

    @property
    def _first(self) -> Backend:
        return next(iter(self.variants.values()))

    async def _adopt(self) -> None:
        published = await self._board.read_weights(self.name)
        if published is not None and set(published) == set(self._weights):
            self._weights = check_weights(self._weights, published)

    async def _follow_board(self) -> None:
        """Adopt the weights another process published (a change via another ingress replica)."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                await self._adopt()
            except Exception:  # NOTE: a board that hiccups keeps the last weights; retry soon
                logger.warning("cannot read the weights of %s", self.name, exc_info=True)

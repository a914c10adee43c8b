"""A deterministic backend without torch, for API tests and demos.

Tokens are UTF-8 bytes (id = byte + 3; 1 is BOS, 2 is EOS). Every choice answers `reply`, one byte
per step, then EOS; with `ignore_eos` it repeats the reply until `max_tokens`. At most
`max_concurrency` requests run at once; the others wait in the same `FairQueue` the engine uses.
`token_delay_s` makes it a slow backend for disconnect and limit tests. Stop strings and text
deltas go through the engine's own `IncrementalDetokenizer`, so API tests check that logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

from llmserve.backends.base import Canary
from llmserve.engine.detokenizer import IncrementalDetokenizer
from llmserve.engine.fair_queue import FairQueue
from llmserve.errors import UnsupportedOperationError
from llmserve.structured.llguidance_compiler import check_grammar
from llmserve.types import (
    BackendLoad,
    ChatMessage,
    EmbeddingResult,
    FinishReason,
    GenerateOutput,
    GenerateRequest,
    GrammarSpec,
    ModelInfo,
    Priority,
    TokenLogprob,
    TopLogprob,
)

BOS_ID, EOS_ID, BYTE_OFFSET = 1, 2, 3
BOS_TEXT = "<s>"
DEFAULT_REPLY = "Hello! I am a fake model."


class FakeBackend:
    """Implements the `Backend` protocol with byte tokens and a fixed reply."""

    canary: Canary | None = None  # a plain model: no variants

    def __init__(
        self,
        name: str = "fake-model",
        *,
        reply: str = DEFAULT_REPLY,
        max_model_len: int = 256,
        max_concurrency: int = 8,
        token_delay_s: float = 0.0,
        fail_after_tokens: int | None = None,
    ) -> None:
        self._info = ModelInfo(name=name, kind="chat", max_model_len=max_model_len, source="fake")
        self._reply_ids = [b + BYTE_OFFSET for b in reply.encode()]
        self._max_concurrency = max_concurrency
        self._token_delay_s = token_delay_s
        self._fail_after_tokens = fail_after_tokens
        self._waiting: FairQueue[tuple[asyncio.Future[None], bool]] = FairQueue()  # is_batch
        self._num_running = 0
        self._num_running_batch = 0  # at most half the seats, as the engine's batch_share
        self._max_batch = max(1, max_concurrency // 2)
        self._aborting: set[str] = set()
        self._in_flight: set[str] = set()  # request ids: a duplicate is refused, as the engine does
        self._is_shut_down = False
        self.aborted_request_ids: list[str] = []  # for tests: requests closed or aborted early

    @property
    def info(self) -> ModelInfo:
        """The served model."""
        return self._info

    async def start(self) -> None:
        """Nothing to load."""
        self._is_shut_down = False

    async def shutdown(self) -> None:
        """Abort every request in flight."""
        self._is_shut_down = True

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """UTF-8 bytes as ids, after BOS when `add_special_tokens`."""
        ids = [b + BYTE_OFFSET for b in text.encode()]
        return [BOS_ID, *ids] if add_special_tokens else ids

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of the ids; special tokens are skipped."""
        return bytes(i - BYTE_OFFSET for i in token_ids if i >= BYTE_OFFSET).decode(
            errors="replace"
        )

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """A ChatML-like prompt ending with the assistant's turn (tools: their names first)."""
        names = "".join(f"<|tool|>{t.get('function', {}).get('name')}\n" for t in tools or ())
        turns = "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages)
        return f"{BOS_TEXT}{names}{turns}<|assistant|>\n"

    def compile_grammar(self, spec: GrammarSpec) -> None:
        """Checks the grammar; the fake's fixed reply does not follow it."""
        check_grammar(spec)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """Chat models do not embed."""
        raise UnsupportedOperationError("fake chat model cannot embed")

    def load(self) -> BackendLoad:
        """Requests running and waiting."""
        return BackendLoad(
            self._num_running,
            len(self._waiting),
            self._waiting.count_by_tenant(),
            max_running=self._max_concurrency,
        )

    async def abort(self, request_id: str) -> None:
        """End the request at its next step with finish_reason "abort"."""
        self._aborting.add(request_id)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        """Stream the reply for every choice, one byte-token per step, round-robin over choices."""
        if request.request_id in self._in_flight:
            raise ValueError(f"request {request.request_id!r} is already in flight")
        self._in_flight.add(request.request_id)
        try:
            async with contextlib.aclosing(self._generate(request)) as outputs:
                async for output in outputs:
                    yield output
        finally:
            self._in_flight.discard(request.request_id)

    async def _generate(self, request: GenerateRequest) -> AsyncGenerator[GenerateOutput, None]:
        finished = False
        arrived_at = time.monotonic()
        await self._admit(request)
        try:
            async for output in self._steps(request, time.monotonic() - arrived_at):
                yield output
            finished = True
        finally:
            if not finished:
                self.aborted_request_ids.append(request.request_id)
            self._aborting.discard(request.request_id)
            self._leave_seat(request.priority >= Priority.BATCH)
            self._start_next()

    async def _admit(self, request: GenerateRequest) -> None:
        is_batch = request.priority >= Priority.BATCH
        if not self._waiting and self._has_seat(is_batch):
            self._take_seat(is_batch)
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (turn, is_batch)
        self._waiting.push(entry, tenant=request.tenant, priority=int(request.priority))
        try:
            await turn
        except BaseException:
            # NOTE: a cancelled turn may already be popped by `_start_next`, which gave it no seat
            has_seat = turn.done() and not turn.cancelled()
            if not self._waiting.remove(entry) and has_seat:  # started: give the seat back
                self._leave_seat(is_batch)
                self._start_next()
            self.aborted_request_ids.append(request.request_id)
            raise

    def _has_seat(self, is_batch: bool) -> bool:
        if self._num_running >= self._max_concurrency:
            return False
        return not is_batch or self._num_running_batch < self._max_batch

    def _take_seat(self, is_batch: bool) -> None:
        self._num_running += 1
        self._num_running_batch += int(is_batch)

    def _leave_seat(self, is_batch: bool) -> None:
        self._num_running -= 1
        self._num_running_batch -= int(is_batch)

    def _start_next(self) -> None:
        while (head := self._waiting.peek()) is not None and self._has_seat(head[1]):
            turn, is_batch = self._waiting.pop()
            if not turn.done():
                self._take_seat(is_batch)
                turn.set_result(None)

    async def _steps(
        self, request: GenerateRequest, queue_time_s: float
    ) -> AsyncIterator[GenerateOutput]:
        sampling = request.sampling
        texts = [IncrementalDetokenizer(self.decode, sampling.stop) for _ in range(sampling.n)]
        for step in range(sampling.max_tokens):
            await asyncio.sleep(self._token_delay_s)
            if self._fail_after_tokens is not None and step >= self._fail_after_tokens:
                raise RuntimeError("fake backend failure")
            token_id = self._token_at(step, sampling.ignore_eos)
            finish = self._finish_reason(request, step, token_id)
            for index, text in enumerate(texts):
                if finish not in ("stop", "abort"):
                    text.add_token(token_id)  # the engine's own stop-string logic
                if text.stopped:
                    finish = "stop"
                delta = "" if finish == "abort" else text.take_delta(final=finish is not None)
                yield GenerateOutput(
                    request_id=request.request_id,
                    index=index,
                    text=delta,
                    token_ids=() if finish == "abort" else (token_id,),
                    num_prompt_tokens=len(request.prompt_token_ids),
                    num_output_tokens=step if finish == "abort" else step + 1,
                    finish_reason=finish,
                    logprobs=self._logprobs(token_id, sampling.logprobs),
                    queue_time_s=queue_time_s,
                )
            if finish is not None:
                return

    def _token_at(self, step: int, ignore_eos: bool) -> int:
        if ignore_eos:
            return self._reply_ids[step % len(self._reply_ids)]
        return self._reply_ids[step] if step < len(self._reply_ids) else EOS_ID

    def _finish_reason(
        self, request: GenerateRequest, step: int, token_id: int
    ) -> FinishReason | None:
        if self._is_shut_down or request.request_id in self._aborting:
            return "abort"
        if token_id == EOS_ID or token_id in request.sampling.stop_token_ids:
            return "stop"
        return "length" if step + 1 >= request.sampling.max_tokens else None

    def _logprobs(self, token_id: int, num_top: int | None) -> tuple[TokenLogprob, ...] | None:
        if num_top is None:
            return None
        tops = tuple(
            TopLogprob(token_id + k, self.decode([token_id + k]), -0.5 - k) for k in range(num_top)
        )
        return (TokenLogprob(token_id, self.decode([token_id]), -0.5, tops),)

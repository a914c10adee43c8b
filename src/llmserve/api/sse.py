"""Server-sent events framing for streamed responses.

`data: {json}\n\n` per chunk, `data: [DONE]\n\n` at the end. An error after the first byte is sent
as `data: {"error": {...}}` followed by `[DONE]`: the status code is already 200 by then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llmserve.api.errors import server_error
from llmserve.api.generation import close_iterator
from llmserve.auth.base import Slot, UsageRecord
from llmserve.errors import LlmserveError

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def encode_event(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying `payload` as compact JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class UsageMeter:
    """Token counts of a request in progress, recorded when its slot is released."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    is_error: bool = False

    def record(self) -> UsageRecord:
        """The usage record for the slot."""
        return UsageRecord(self.model, self.prompt_tokens, self.completion_tokens, self.is_error)


async def sse_body(
    chunks: AsyncGenerator[dict[str, Any], None], *, slot: Slot, meter: UsageMeter, request_id: str
) -> AsyncGenerator[bytes, None]:
    """Frame `chunks` as SSE; release `slot` after the last byte, on error or on disconnect."""
    try:
        try:
            async for chunk in chunks:
                yield encode_event(chunk)
        except LlmserveError as exc:
            meter.is_error = True
            yield encode_event(exc.to_body())
        except Exception:  # the status is already 200: report in-band, never a traceback
            logger.exception("stream %s failed", request_id)
            meter.is_error = True
            yield encode_event(server_error(request_id).to_body())
        yield DONE
    finally:
        await close_iterator(chunks)
        with anyio.CancelScope(shield=True):
            await slot.release(meter.record())


class SseResponse(StreamingResponse):
    """A streaming response that runs `on_close` when it ends, even if its body never started.

    NOTE: a client that leaves before the first byte cancels the response before Starlette
    iterates the body, so the body generator's own `finally` never runs; this one always does.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        *,
        headers: MutableMapping[str, str],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._on_close()


def sse_response(
    chunks: AsyncGenerator[dict[str, Any], None],
    *,
    slot: Slot,
    meter: UsageMeter,
    request_id: str,
    headers: MutableMapping[str, str],
) -> SseResponse:
    """Stream `chunks` as SSE; `slot` is released once, whenever and however the stream ends."""
    body = sse_body(chunks, slot=slot, meter=meter, request_id=request_id)

    async def close() -> None:
        await body.aclose()  # runs sse_body's `finally` if it started, else marks it closed
        await close_iterator(chunks)
        await slot.release(meter.record())

    return SseResponse(body, headers=headers, on_close=close)

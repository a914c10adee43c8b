"""Server-sent events framing for streamed responses.

Chat and text completions: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` at the end. An error
after the first byte is sent as `data: {"error": {...}}` followed by `[DONE]`: the status code is
already 200 by then. The Responses API names each event (`event: <type>\n` before its data line),
sends an error as `event: error` and has no `[DONE]`, as OpenAI does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llmserve.api.http.deadline import Deadline
from llmserve.api.http.errors import client_error, server_error
from llmserve.auth.base import Slot
from llmserve.errors import LlmserveError
from llmserve.serving.outputs import close_iterator
from llmserve.serving.usage import UsageMeter

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def encode_event(payload: Mapping[str, object], event: str | None = None) -> bytes:
    """One SSE event carrying `payload` as compact JSON, named `event` when given."""
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return data if event is None else f"event: {event}\n".encode() + data


@dataclass(frozen=True)
class SseFormat:
    """How a stream frames its events, its errors and its end."""

    named_events: bool = False  # `event: <payload["type"]>` before each data line
    done: bytes | None = DONE  # sent after the last event (also after an error)

    def encode(self, payload: Mapping[str, object]) -> bytes:
        """One event."""
        return encode_event(payload, str(payload["type"]) if self.named_events else None)

    def error(self, error: LlmserveError, sequence_number: int) -> bytes:
        """An error event: OpenAI's error body, or the Responses `error` event."""
        if not self.named_events:
            return encode_event(error.to_body())
        body = error.to_body()["error"]
        event = {
            "type": "error",
            "code": body["code"],
            "message": body["message"],
            "param": body["param"],
            "sequence_number": sequence_number,
        }
        return self.encode(event)


CHAT_SSE = SseFormat()
RESPONSES_SSE = SseFormat(named_events=True, done=None)


async def sse_body(
    chunks: AsyncGenerator[Mapping[str, object], None],
    *,
    slot: Slot,
    meter: UsageMeter,
    request_id: str,
    sse_format: SseFormat = CHAT_SSE,
    deadline: Deadline | None = None,
) -> AsyncGenerator[bytes, None]:
    """Frame `chunks` as SSE; release `slot` after the last byte, on error or on disconnect.

    Past `deadline`, `chunks` is cancelled (aborting its generation) and a timeout error is sent.
    """
    num_events = 0
    events = chunks if deadline is None else deadline.iterate(chunks)
    try:
        try:
            async for chunk in events:
                yield sse_format.encode(chunk)
                num_events += 1
        except LlmserveError as exc:
            meter.is_error = True
            # NOTE: Responses events are numbered from 0, so the next number is the count sent.
            yield sse_format.error(client_error(exc, request_id), num_events)
        except Exception:  # the status is already 200: report in-band, never a traceback
            logger.exception("stream %s failed", request_id)
            meter.is_error = True
            yield sse_format.error(server_error(request_id), num_events)
        if sse_format.done is not None:
            yield sse_format.done
    finally:
        await close_iterator(events)
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
    chunks: AsyncGenerator[Mapping[str, object], None],
    *,
    slot: Slot,
    meter: UsageMeter,
    request_id: str,
    headers: MutableMapping[str, str],
    sse_format: SseFormat = CHAT_SSE,
    deadline: Deadline | None = None,
) -> SseResponse:
    """Stream `chunks` as SSE; `slot` is released once, whenever and however the stream ends."""
    body = sse_body(
        chunks,
        slot=slot,
        meter=meter,
        request_id=request_id,
        sse_format=sse_format,
        deadline=deadline,
    )

    async def close() -> None:
        await body.aclose()  # runs sse_body's `finally` if it started, else marks it closed
        await close_iterator(chunks)
        await slot.release(meter.record())

    return SseResponse(body, headers=headers, on_close=close)

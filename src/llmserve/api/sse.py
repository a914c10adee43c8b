"""Server-sent events framing for streamed responses.

`data: {json}\n\n` per chunk, `data: [DONE]\n\n` at the end. An error after the first byte is sent
as `data: {"error": {...}}` followed by `[DONE]`: the status code is already 200 by then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import StreamingResponse

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
) -> AsyncIterator[bytes]:
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


def sse_response(body: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingResponse:
    """A streaming response with the SSE media type."""
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )

"""The last step shared by generation routes: stream chunks, or collect and answer once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from llmserve.api.admission import request_id_of, server_state
from llmserve.api.deadline import Deadline
from llmserve.api.generation import Choice, collect_unless_disconnected
from llmserve.api.sse import CHAT_SSE, SseFormat, UsageMeter, sse_response
from llmserve.auth.base import Slot
from llmserve.backends.base import GenerateOutput

Outputs = AsyncGenerator[tuple[int, GenerateOutput], None]
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left; it never reaches the client


def response_base(prefix: str, request_id: str, object_type: str, model: str) -> dict[str, Any]:
    """The fields every response body or chunk starts with."""
    suffix = request_id.removeprefix("req_")
    return {
        "id": f"{prefix}-{suffix}",
        "object": object_type,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }


def usage_body(meter: UsageMeter) -> dict[str, Any]:
    """OpenAI's `usage` object."""
    return {
        "prompt_tokens": meter.prompt_tokens,
        "completion_tokens": meter.completion_tokens,
        "total_tokens": meter.prompt_tokens + meter.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": meter.cached_tokens},
    }


async def count_cached_tokens(outputs: Outputs, meter: UsageMeter) -> Outputs:
    """`outputs` unchanged, with the prompt tokens served from the prefix cache noted in `meter`."""
    async with contextlib.aclosing(outputs):
        async for index, output in outputs:
            meter.count_cached_tokens(output)
            yield index, output


async def respond(
    request: Request,
    *,
    slot: Slot,
    meter: UsageMeter,
    outputs: Outputs,
    num_choices: int,
    stream: bool,
    to_chunks: Callable[[Outputs], AsyncGenerator[dict[str, Any], None]],
    to_body: Callable[[list[Choice]], dict[str, Any]],
    sse_format: SseFormat = CHAT_SSE,
) -> Response:
    """Answer with SSE or one JSON body; the slot is released after the last byte in both cases.

    Call this right after `acquire_slot`: from here on, the slot's release is guaranteed. The
    generation may run `auth.request_timeout_s` from here; then it is aborted with a 504 (in-band
    when streaming).
    """
    headers = dict(slot.headers)
    outputs = count_cached_tokens(outputs, meter)
    deadline = Deadline.after(server_state(request).config.auth.request_timeout_s)
    if stream:
        return sse_response(
            to_chunks(outputs),
            slot=slot,
            meter=meter,
            request_id=request_id_of(request),
            headers=headers,
            sse_format=sse_format,
            deadline=deadline,
        )
    try:
        async with deadline.enforce():
            choices = await collect_unless_disconnected(request, outputs, num_choices)
        if choices is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        meter.completion_tokens = sum(choice.num_output_tokens for choice in choices)
        return JSONResponse(to_body(choices), headers=headers)
    except BaseException:
        meter.is_error = True
        raise
    finally:
        await slot.release(meter.record())

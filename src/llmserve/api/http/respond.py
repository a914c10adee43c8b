"""The last step shared by generation routes: stream chunks, or run to the end and answer once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import TypeVar

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from llmserve.api.admission import request_id_of, server_state
from llmserve.api.http.deadline import Deadline
from llmserve.api.http.request_metrics import OutputObserver, arrival_time, watch_outputs
from llmserve.api.http.sse import CHAT_SSE, SseFormat, sse_response
from llmserve.auth.base import Slot
from llmserve.serving.cache_namespace import namespace_kind
from llmserve.serving.generation import Generation
from llmserve.serving.usage import UsageMeter

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left; it never reaches the client
BodyT = TypeVar("BodyT")
ChunkT = TypeVar("ChunkT", bound=Mapping[str, object])


async def reporting_usage(
    chunks: AsyncGenerator[ChunkT, None], slot: Slot, meter: UsageMeter
) -> AsyncGenerator[ChunkT, None]:
    """`chunks`, reporting the tokens sent so far to `slot` with each (stored once a second)."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            slot.report(meter.record())
            yield chunk


async def respond(
    request: Request,
    slot: Slot,
    generation: Generation[BodyT, ChunkT],
    *,
    stream: bool,
    sse_format: SseFormat = CHAT_SSE,
) -> Response:
    """Answer with SSE or one JSON body; the slot is released after the last byte in both cases.

    Call this right after `acquire_slot`: from here on, the slot's release is guaranteed. The
    generation may run `limits.request_timeout_s` from here; then it is aborted with a 504
    (in-band when streaming).
    """
    headers = dict(slot.headers)
    meter = generation.meter
    state = server_state(request)
    deadline = Deadline.after(state.config.limits.request_timeout_s)
    slot.report(meter.record())  # from here the request counts in usage, even if we are killed
    observer = OutputObserver(
        state.metrics,
        meter.model,
        generation.num_choices,
        arrival_time(request.state),
        namespace_kind(generation.requests[0].cache_namespace) if generation.requests else "key",
    )
    generation.watch = lambda outputs: watch_outputs(outputs, observer)  # TTFT, ITL: metrics.py
    if stream:
        return sse_response(
            # cut off in-band at the drain's timeout
            state.drain.guard(reporting_usage(generation.chunks(), slot, meter)),
            slot=slot,
            meter=meter,
            request_id=request_id_of(request),
            headers=headers,
            sse_format=sse_format,
            deadline=deadline,
        )
    try:
        async with deadline.enforce(), state.drain.cutoff():
            body = await unless_disconnected(request, generation.result())
        if body is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        return JSONResponse(body, headers=headers)
    except BaseException:
        meter.is_error = True
        raise
    finally:
        await slot.release(meter.record())


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """The result of `work`, or None as soon as the client disconnects (`work` is cancelled)."""
    working = asyncio.ensure_future(work)
    watching = asyncio.create_task(wait_for_disconnect(request))
    try:
        await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
        return working.result() if working.done() else None
    finally:
        for task in (working, watching):
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(working, watching, return_exceptions=True)


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client goes away (the body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass

"""The Responses API on chat models: create (streaming, stored, background), retrieve (and
replay a background response's events), cancel, delete.

Stored responses live in the durable job store (jobs/), so they survive restarts and any server
process sharing the home can answer for them. A background response is run by the job runner;
no client connection is tied to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llmserve.api.access.jobs_access import job_owner, jobs_of
from llmserve.api.access.response_access import owned_response, stores_of
from llmserve.api.admission import Routed, acquire_slot, route_request, server_state
from llmserve.api.admission.background_admission import acquire_background_slot
from llmserve.api.http.openapi import request_body
from llmserve.api.http.respond import respond
from llmserve.api.http.sse import RESPONSES_SSE
from llmserve.api.http.variants import mark_variant
from llmserve.auth.base import Slot, UsageRecord
from llmserve.errors import InvalidRequestError
from llmserve.ids import response_id_of
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import ResponseRecord
from llmserve.jobs.transitions import can_cancel_response
from llmserve.jobs.wire import StoredRequest
from llmserve.serving.response_objects import ResponseObject, response_object
from llmserve.serving.responses import prepare_response
from llmserve.serving.schemas_responses import ResponseCreateRequest
from llmserve.statuses import ENDED_RESPONSE_STATUSES

router = APIRouter()
REPLAY_POLL_S = 0.05  # how often a replayed stream looks for new events in the store


@router.post("/v1/responses", openapi_extra=request_body(ResponseCreateRequest, streams=True))
async def create_response(request: Request) -> Response:
    """OpenAI Responses: text in, one assistant message out, streaming or not, or in background."""
    routed = await route_request(request, ResponseCreateRequest, kind="chat")
    jobs = jobs_of(request)
    generation = await prepare_response(routed.context, routed.body, stores_of(jobs))
    if routed.body.background:
        server_state(request).drain.check_admitting()  # 503 while draining, as chat
        background_slot = await acquire_background_slot(
            request, routed, generation.estimated_tokens
        )
        try:
            return await queue_background(request, jobs, background_slot, routed)
        except BaseException:
            await background_slot.release(UsageRecord(routed.model, is_error=True))
            raise
    slot = await acquire_slot(request, routed, generation.estimated_tokens)
    return await respond(
        request, slot, generation, stream=routed.body.stream, sse_format=RESPONSES_SSE
    )


async def queue_background(
    request: Request, jobs: Jobs, slot: Slot, routed: Routed[ResponseCreateRequest]
) -> Response:
    """Store the response `queued` for the job runner, holding `slot` until it ends; answer at
    once (or replay its stream)."""
    body, owner = routed.body, routed.principal.key_id
    response_id = response_id_of(str(request.state.request_id))
    queued = response_object(response_id, body, status="queued", output=[], usage_body=None)
    request_json: StoredRequest = {"body": body.model_dump(mode="json", exclude_unset=True)}
    if routed.variant is not None:  # the runner generates on the variant this answer names
        request_json["variant"] = routed.variant
    record = ResponseRecord(response_id, owner, "queued", queued, request_json, True)
    await jobs.call(jobs.store.put_response, record)
    jobs.slots.hold(response_id, slot, routed.model)
    if body.stream:
        return replay_response(jobs, response_id, -1, slot.headers)
    return JSONResponse(queued, headers=dict(slot.headers))


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(response_id: str, request: Request) -> Response:
    """A stored response; with `stream=true`, its events after `starting_after`, then live ones."""
    jobs, record = await owned_response(request, response_id)
    variant = record.request.get("variant")
    if isinstance(variant, str):
        mark_variant(request, variant)  # x-llmserve-variant, as on its creation
    if request.query_params.get("stream", "false").lower() != "true":
        return JSONResponse(record.response)
    raw_after = request.query_params.get("starting_after", "-1")
    if not raw_after.lstrip("-").isdecimal():
        raise InvalidRequestError("`starting_after` must be an integer.", param="starting_after")
    return replay_response(jobs, response_id, int(raw_after))


def replay_response(
    jobs: Jobs, response_id: str, starting_after: int, headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """SSE of the stored events after `starting_after`, following new ones until the end."""
    return StreamingResponse(
        replay_events(jobs, response_id, starting_after),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", **(headers or {})},
    )


async def replay_events(jobs: Jobs, response_id: str, after: int) -> AsyncGenerator[bytes, None]:
    """Events from the store; ends after the response's last event (or once it is gone)."""
    while True:
        record = await jobs.call(jobs.store.get_response, None, response_id)
        for event in await jobs.call(jobs.store.events_after, response_id, after):
            after = int(event["sequence_number"])
            yield RESPONSES_SSE.encode(event)
        if record is None or record.status in ENDED_RESPONSE_STATUSES:
            if not await jobs.call(jobs.store.events_after, response_id, after):
                return
            continue
        await asyncio.sleep(REPLAY_POLL_S)


@router.post("/v1/responses/{response_id}/cancel", response_model=None)
async def cancel_response(response_id: str, request: Request) -> ResponseObject:
    """Stop a background response; it ends `cancelled`."""
    jobs, record = await owned_response(request, response_id)
    if not record.is_background:
        raise InvalidRequestError(
            "Only responses created with `background: true` can be cancelled.",
            param="response_id",
        )
    if can_cancel_response(record.status):
        record.status = "cancelled"
        record.response = {**record.response, "status": "cancelled"}
        await jobs.call(jobs.store.put_response, record)
    return record.response


@router.delete("/v1/responses/{response_id}", response_model=None)
async def delete_response(response_id: str, request: Request) -> dict[str, object]:
    """Delete a stored response (a running background response is cancelled with it)."""
    jobs, _ = await owned_response(request, response_id)
    owner = await job_owner(request)
    await jobs.call(jobs.store.delete_response, owner, response_id)
    return {"id": response_id, "object": "response", "deleted": True}

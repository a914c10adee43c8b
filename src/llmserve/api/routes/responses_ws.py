"""WebSocket mode of the Responses API: one socket at `/v1/responses`, many turns.

The client sends `response.create` events (the body of `POST /v1/responses`, streaming implied)
and receives each response's stream events as JSON text frames, one response at a time; a turn
continues the last by `previous_response_id`. Auth (the `Authorization` header of the upgrade),
per-key limits and admission are those of the HTTP route; a refused turn answers an `error`
event with its HTTP status and the socket stays open.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from llmserve.api.access.jobs_access import jobs_of
from llmserve.api.access.response_access import stores_of
from llmserve.api.admission import Routed, acquire_slot, server_state
from llmserve.api.http.errors import from_pydantic
from llmserve.api.http.middleware import new_request_id
from llmserve.auth.base import Principal, UsageRecord
from llmserve.errors import InvalidRequestError, LlmserveError
from llmserve.serving.responses import prepare_response
from llmserve.serving.routing import resolve_backend
from llmserve.serving.schemas_responses import ResponseCreateRequest

router = APIRouter()


@router.websocket("/v1/responses")
async def responses_socket(websocket: WebSocket) -> None:
    """Authenticate the upgrade, then answer each `response.create` in turn."""
    gatekeeper = server_state(websocket).gatekeeper
    try:
        principal = await gatekeeper.authenticate(websocket.headers.get("authorization"))
    except LlmserveError as error:  # refused at the upgrade, with the HTTP error body
        await websocket.send_denial_response(
            JSONResponse(error.to_body(), status_code=error.status_code)
        )
        return
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive_text()
            stream_id: object = None
            try:
                event = parse_event(message)
                stream_id = event.pop("stream_id", None)
                await run_turn(websocket, principal, event, stream_id)
            except LlmserveError as error:
                await websocket.send_text(json.dumps(error_event(error, stream_id)))


def parse_event(message: str) -> dict[str, Any]:
    """A client event: JSON with `type: response.create`."""
    try:
        event = json.loads(message)
    except ValueError:
        raise InvalidRequestError("The event is not valid JSON.", param=None) from None
    if not isinstance(event, dict) or event.get("type") != "response.create":
        raise InvalidRequestError(
            "Send `response.create` events on this socket.", param="type"
        ) from None
    event.pop("type")
    if event.get("background"):
        raise InvalidRequestError(
            "Background responses are not supported over WebSocket.", param="background"
        )
    return event


async def run_turn(
    websocket: WebSocket, principal: Principal, body_json: dict[str, Any], stream_id: object
) -> None:
    """One response: admitted like the HTTP route, its events sent as they come."""
    try:
        body = ResponseCreateRequest.model_validate({**body_json, "stream": True})
    except ValidationError as exc:
        raise from_pydantic(exc) from None
    state = server_state(websocket)
    resolved = await resolve_backend(state.backends, principal, body.model, kind="chat")
    routed = Routed(principal, body, resolved.backend, new_request_id(), resolved.variant)
    generation = await prepare_response(routed.context, body, stores_of(jobs_of(websocket)))
    slot = await acquire_slot(websocket, routed, generation.estimated_tokens)
    usage = UsageRecord(body.model, is_error=True)
    try:
        async with contextlib.aclosing(generation.chunks()) as events:
            async for event in events:
                frame: dict[str, Any] = dict(event)
                if stream_id is not None:
                    frame["stream_id"] = stream_id
                await websocket.send_text(json.dumps(frame))
        usage = generation.meter.record()
    finally:
        await slot.release(usage)


def error_event(error: LlmserveError, stream_id: object) -> dict[str, Any]:
    """The `error` event of a refused turn, with the status the HTTP route would answer."""
    event: dict[str, Any] = {
        "type": "error",
        "status": error.status_code,
        "error": error.to_body()["error"],
    }
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event

"""POST /v1/responses and GET /v1/responses/{id}: the Responses API on chat models.

Generation goes through the same admission and `Backend.generate` as chat completions. Stored
responses live in the app's `ResponseStore` (in memory, bounded; see serving/response_store.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmserve.api.admission import acquire_slot, route_request, server_state
from llmserve.api.openapi import request_body
from llmserve.api.respond import respond
from llmserve.api.sse import RESPONSES_SSE
from llmserve.errors import NotFoundError
from llmserve.serving.response_objects import ResponseObject
from llmserve.serving.response_store import ResponseStore
from llmserve.serving.responses import prepare_response
from llmserve.serving.schemas_responses import ResponseCreateRequest

router = APIRouter()


def response_store(request: Request) -> ResponseStore:
    """The app's store of responses."""
    store: ResponseStore = request.app.state.response_store
    return store


@router.post("/v1/responses", openapi_extra=request_body(ResponseCreateRequest, streams=True))
async def create_response(request: Request) -> Response:
    """OpenAI Responses: text in, one assistant message out, streaming or not."""
    routed = await route_request(request, ResponseCreateRequest, kind="chat")
    store = response_store(request) if routed.body.store else None
    generation = await prepare_response(routed.context, routed.body, store)
    slot = await acquire_slot(request, routed, generation.estimated_tokens)
    return await respond(
        request, slot, generation, stream=routed.body.stream, sse_format=RESPONSES_SSE
    )


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(response_id: str, request: Request) -> ResponseObject:
    """A stored response made by the same API key; 404 otherwise."""
    principal = await server_state(request).gatekeeper.authenticate(
        request.headers.get("authorization")
    )
    stored = response_store(request).get(principal.key_id, response_id)
    if stored is None:
        raise NotFoundError(f"No response found with id '{response_id}'.", param="response_id")
    return stored

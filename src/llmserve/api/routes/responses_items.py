"""Responses API routes beside create: compact a conversation, count a prompt's input tokens,
list a stored response's input items.

Registered before `/v1/responses/{response_id}` so that `compact` and `input_tokens` are never
read as response ids.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llmserve.api.access.jobs_access import JsonBody, jobs_of
from llmserve.api.access.list_pages import list_page
from llmserve.api.access.response_access import owned_response, stores_of
from llmserve.api.admission import acquire_slot, route_request
from llmserve.api.http.openapi import request_body
from llmserve.api.http.respond import respond
from llmserve.serving.response_compact import prepare_compact
from llmserve.serving.responses import response_prompt
from llmserve.serving.schemas_responses import CompactRequest, InputTokensRequest

router = APIRouter()


@router.post("/v1/responses/compact", openapi_extra=request_body(CompactRequest))
async def compact_response(request: Request) -> Response:
    """The conversation's user messages and one compaction item holding the model's summary."""
    routed = await route_request(request, CompactRequest, kind="chat")
    generation = await prepare_compact(routed.context, routed.body, stores_of(jobs_of(request)))
    slot = await acquire_slot(request, routed, generation.estimated_tokens)
    return await respond(request, slot, generation, stream=False)


@router.post("/v1/responses/input_tokens", openapi_extra=request_body(InputTokensRequest))
async def count_input_tokens(request: Request) -> JSONResponse:
    """How many tokens the prompt of a response with this input would have."""
    routed = await route_request(request, InputTokensRequest, kind="chat")
    prompt = await response_prompt(routed.context, routed.body, stores_of(jobs_of(request)))
    return JSONResponse({"object": "response.input_tokens", "input_tokens": len(prompt.ids)})


@router.get("/v1/responses/{response_id}/input_items", response_model=None)
async def list_input_items(response_id: str, request: Request) -> JsonBody:
    """The input items of a stored response (newest first by default, as OpenAI lists them)."""
    _, record = await owned_response(request, response_id)
    items = list(record.request.get("input_items", []))
    return list_page(items, request)

"""POST /v1/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmserve.api.admission import acquire_slot, route_request
from llmserve.api.http.openapi import request_body
from llmserve.api.http.respond import respond
from llmserve.serving.completions import prepare_completion
from llmserve.serving.schemas import CompletionRequest

router = APIRouter()


@router.post("/v1/completions", openapi_extra=request_body(CompletionRequest, streams=True))
async def create_completion(request: Request) -> Response:
    """OpenAI text completions: one choice per prompt and `n`, streaming or not."""
    routed = await route_request(request, CompletionRequest, kind="chat")
    generation = await prepare_completion(routed.context, routed.body)
    slot = await acquire_slot(request, routed, generation.estimated_tokens)
    return await respond(request, slot, generation, stream=routed.body.stream)

"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmserve.api.admission import acquire_slot, route_request
from llmserve.api.http.openapi import request_body
from llmserve.api.http.respond import respond
from llmserve.serving.chat import prepare_chat
from llmserve.serving.schemas import ChatCompletionRequest

router = APIRouter()


@router.post(
    "/v1/chat/completions", openapi_extra=request_body(ChatCompletionRequest, streams=True)
)
async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions, streaming or not."""
    routed = await route_request(request, ChatCompletionRequest, kind="chat")
    generation = await prepare_chat(routed.context, routed.body)
    slot = await acquire_slot(request, routed, generation.estimated_tokens)
    return await respond(request, slot, generation, stream=routed.body.stream)

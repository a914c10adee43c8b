"""POST /tokenize and POST /detokenize, as vLLM's OpenAI server has them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from llmserve.api.admission import route_request
from llmserve.api.http.openapi import request_body
from llmserve.serving import tokenize as serving
from llmserve.serving.schemas_tokenize import DetokenizeRequest, TokenizeRequest

router = APIRouter()


@router.post("/tokenize", openapi_extra=request_body(TokenizeRequest), response_model=None)
async def tokenize(request: Request) -> serving.TokenizeResult:
    """{count, max_model_len, tokens} for a prompt or chat messages."""
    routed = await route_request(request, TokenizeRequest, kind=None)
    return await serving.tokenize(routed.backend, routed.body)


@router.post("/detokenize", openapi_extra=request_body(DetokenizeRequest), response_model=None)
async def detokenize(request: Request) -> serving.DetokenizeResult:
    """{prompt} for a list of token ids."""
    routed = await route_request(request, DetokenizeRequest, kind=None)
    return serving.detokenize(routed.backend, routed.body)

"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmserve.api.admission import acquire_slot, route_request
from llmserve.api.openapi import request_body
from llmserve.api.schemas_embeddings import EmbeddingRequest, embedding_response
from llmserve.api.sse import UsageMeter
from llmserve.errors import InvalidRequestError

router = APIRouter()


@router.post("/v1/embeddings", openapi_extra=request_body(EmbeddingRequest))
async def create_embeddings(request: Request) -> JSONResponse:
    """OpenAI embeddings: one vector per input string, as floats or base64 float32."""
    routed = await route_request(request, EmbeddingRequest, kind="embedding")
    body = routed.body
    texts = body.texts()
    if body.dimensions is not None:
        raise InvalidRequestError(
            "`dimensions` is not supported by this model.", param="dimensions"
        )
    estimated_tokens = sum(len(text) // 4 + 2 for text in texts)
    slot = await acquire_slot(request, routed, estimated_tokens)
    meter = UsageMeter(routed.model)
    try:
        result = await routed.backend.embed(texts)
        meter.prompt_tokens = result.num_prompt_tokens
        content = embedding_response(
            routed.model, result.vectors, result.num_prompt_tokens, body.encoding_format
        )
        return JSONResponse(content, headers=dict(slot.headers))
    except BaseException:
        meter.is_error = True
        raise
    finally:
        await slot.release(meter.record())

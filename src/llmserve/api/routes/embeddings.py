"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmserve.api.admission import acquire_slot, route_request
from llmserve.api.http.openapi import request_body
from llmserve.serving.embeddings import prepare_embeddings
from llmserve.serving.schemas_embeddings import EmbeddingRequest

router = APIRouter()


@router.post("/v1/embeddings", openapi_extra=request_body(EmbeddingRequest))
async def create_embeddings(request: Request) -> JSONResponse:
    """OpenAI embeddings: one vector per input string, as floats or base64 float32."""
    routed = await route_request(request, EmbeddingRequest, kind="embedding")
    job = prepare_embeddings(routed.context, routed.body)
    slot = await acquire_slot(request, routed, job.estimated_tokens)
    try:
        content = await job.run()
        return JSONResponse(content, headers=dict(slot.headers))
    except BaseException:
        job.meter.is_error = True
        raise
    finally:
        await slot.release(job.meter.record())

"""The Batch API: POST /v1/batches, GET list, GET one, POST cancel. The runner is in jobs/."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from llmserve.api.access.jobs_access import JsonBody, job_owner, jobs_of, list_body, page_limit
from llmserve.api.admission import server_state
from llmserve.api.http.json_body import parse_json_body
from llmserve.api.http.openapi import request_body
from llmserve.errors import LlmserveError, NotFoundError
from llmserve.jobs.batches import BatchSpec, cancel_batch, create_batch
from llmserve.jobs.objects import batch_object
from llmserve.serving.routing import lookup_backend
from llmserve.serving.schemas import StrictModel
from llmserve.types import ModelKind

router = APIRouter()
BATCHES_PATH = "/v1/batches"


class BatchCreateRequest(StrictModel):
    """POST /v1/batches."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    output_expires_after: dict[str, object] | None = None


@router.post(BATCHES_PATH, openapi_extra=request_body(BatchCreateRequest))
async def create(request: Request) -> JsonBody:
    """A new batch over an uploaded `batch` file; it runs in the background."""
    state = server_state(request)
    principal = await state.gatekeeper.authenticate(request.headers.get("authorization"))
    state.drain.check_admitting()  # 503 while draining, as chat
    body = await parse_json_body(request, BatchCreateRequest)
    spec = BatchSpec(body.input_file_id, body.endpoint, body.completion_window, body.metadata)
    kind: ModelKind = "embedding" if body.endpoint == "/v1/embeddings" else "chat"

    def has_model(model: str) -> bool:
        try:
            lookup_backend(state.backends, principal, model, kind)
        except LlmserveError:
            return False
        return True

    jobs = jobs_of(request)
    max_line_bytes = state.config.limits.max_request_body_bytes  # each line is one request
    record = await jobs.call(create_batch, jobs, principal.key_id, spec, has_model, max_line_bytes)
    return batch_object(record)


@router.get(BATCHES_PATH)
async def list_batches(request: Request) -> JsonBody:
    """The caller's batches, newest first (`after`, `limit`)."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    page = await jobs.call(
        jobs.store.list_batches,
        owner,
        after=request.query_params.get("after"),
        limit=page_limit(request),
    )
    return list_body(page, batch_object)


@router.get(BATCHES_PATH + "/{batch_id}")
async def retrieve(batch_id: str, request: Request) -> JsonBody:
    """One batch, with its live `request_counts`."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    record = await jobs.call(jobs.store.get_batch, owner, batch_id)
    if record is None:
        raise NotFoundError(f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch_object(record)


@router.post(BATCHES_PATH + "/{batch_id}/cancel")
async def cancel(batch_id: str, request: Request) -> JsonBody:
    """Stop the batch; lines already done stay in its output."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    return batch_object(await jobs.call(cancel_batch, jobs, owner, batch_id))

"""GET /metrics: Prometheus text format (families in metrics.py).

Unauthenticated like /health, unless `metrics.require_admin_key` asks for the admin key.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from llmserve.api.access.admin_access import require_admin
from llmserve.api.access.jobs_access import jobs_of
from llmserve.api.admission import server_state

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Every family of this server, as Prometheus scrapes it."""
    state = server_state(request)
    if state.config.metrics.require_admin_key:
        await require_admin(request)
    jobs = jobs_of(request)
    counts = await jobs.call(jobs.store.job_counts)
    state.metrics.observe_jobs(counts.batches_by_status, counts.lines_by_outcome)
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

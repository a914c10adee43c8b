"""GET /health (readiness), GET /live (liveness) and GET /version: unauthenticated, for load
balancers and humans. While the server drains (SIGTERM), /health answers 503 `draining` so load
balancers stop sending; /live stays 200 so the process is not killed mid-drain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmserve import __version__
from llmserve.api.admission import server_state

router = APIRouter()


@router.get("/health", response_model=None)
async def health(request: Request) -> dict[str, Any] | JSONResponse:
    """Readiness (models loaded, not draining) plus the work in each backend."""
    state = server_state(request)
    models = {}
    for name, backend in state.backends.items():
        load = backend.load()
        models[name] = {"num_running": load.num_running, "num_waiting": load.num_waiting}
    if state.drain.is_draining:
        return JSONResponse({"status": "draining", "models": models}, status_code=503)
    return {"status": "ok", "models": models}


@router.get("/live")
async def live() -> dict[str, str]:
    """Liveness: 200 as long as the process serves HTTP, draining or not."""
    return {"status": "alive"}


@router.get("/version")
async def version() -> dict[str, str]:
    """The llmserve version."""
    return {"version": __version__}

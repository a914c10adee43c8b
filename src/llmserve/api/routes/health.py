"""GET /health and GET /version: unauthenticated, for load balancers and humans."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from llmserve import __version__
from llmserve.api.admission import server_state

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness plus the work in each backend."""
    state = server_state(request)
    models = {}
    for name, backend in state.backends.items():
        load = backend.load()
        models[name] = {"num_running": load.num_running, "num_waiting": load.num_waiting}
    return {"status": "ok", "models": models}


@router.get("/version")
async def version() -> dict[str, str]:
    """The llmserve version."""
    return {"version": __version__}

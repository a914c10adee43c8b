"""GET /health and GET /version: unauthenticated, for load balancers and humans."""

from __future__ import annotations

from typing import TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmserve import __version__
from llmserve.api.admission import server_state

router = APIRouter()


class ModelLoad(TypedDict):
    num_running: int
    num_waiting: int


class Health(TypedDict, total=False):
    status: str  # "ok", or "unavailable" with a `reason`
    reason: str
    models: dict[str, ModelLoad]


RETRY_AFTER_S = 1


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Readiness plus the work in each backend: 503 with the reason while a dependency is down."""
    state = server_state(request)
    models: dict[str, ModelLoad] = {}
    for name, backend in state.backends.items():
        load = backend.load()
        models[name] = {"num_running": load.num_running, "num_waiting": load.num_waiting}
    problem = await state.gatekeeper.dependency_problem()
    if problem is not None:
        body: Health = {"status": "unavailable", "reason": problem, "models": models}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    ok: Health = {"status": "ok", "models": models}
    return JSONResponse(ok)


@router.get("/version")
async def version() -> dict[str, str]:
    """The llmserve version."""
    return {"version": __version__}

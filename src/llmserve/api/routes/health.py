"""GET /health and GET /version: unauthenticated, for load balancers and humans."""

from __future__ import annotations

from typing import TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmserve import __version__
from llmserve.api.admission import server_state
from llmserve.backends.variants import VariantBackend
from llmserve.types import BackendLoad

router = APIRouter()


class VariantLoad(TypedDict, total=False):
    weight: float
    num_running: int
    num_waiting: int
    replicas: int


class ModelLoad(TypedDict, total=False):
    num_running: int
    num_waiting: int
    replicas: int  # engine replicas now running it (Ray runtime only)
    variants: dict[str, VariantLoad]  # canary models: each variant's weight and load


class Health(TypedDict, total=False):
    status: str  # "ok", or "unavailable" with a `reason`
    reason: str
    models: dict[str, ModelLoad]


RETRY_AFTER_S = 1


def describe_load(load: BackendLoad) -> ModelLoad:
    """The work in one backend, and its replicas when it has several."""
    described: ModelLoad = {"num_running": load.num_running, "num_waiting": load.num_waiting}
    if load.num_replicas is not None:
        described["replicas"] = load.num_replicas
    return described


def describe_variant(weight: float, load: BackendLoad) -> VariantLoad:
    """One variant's weight and work."""
    described: VariantLoad = {
        "weight": weight,
        "num_running": load.num_running,
        "num_waiting": load.num_waiting,
    }
    if load.num_replicas is not None:
        described["replicas"] = load.num_replicas
    return described


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Readiness plus the work in each backend: 503 with the reason while a dependency is down."""
    state = server_state(request)
    models: dict[str, ModelLoad] = {}
    for name, backend in state.backends.items():
        models[name] = describe_load(backend.load())
        if isinstance(backend, VariantBackend):
            models[name]["variants"] = {
                variant: describe_variant(weight, backend.variants[variant].load())
                for variant, weight in backend.weights.items()
            }
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

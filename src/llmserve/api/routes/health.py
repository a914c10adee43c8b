"""GET /health (readiness), GET /live (liveness) and GET /version: unauthenticated, for load
balancers and humans. While the server drains (SIGTERM), /health answers 503 `draining` so load
balancers stop sending; /live stays 200 so the process is not killed mid-drain."""

from __future__ import annotations

from typing import TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmserve import __version__
from llmserve.api.admission import server_state
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
    status: str  # "ok"; "draining"; or "unavailable" with a `reason`
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
    """Readiness plus the work in each backend: 503 while draining or a dependency is down."""
    state = server_state(request)
    models: dict[str, ModelLoad] = {}
    for name, backend in state.backends.items():
        models[name] = describe_load(backend.load())
        canary = backend.canary
        if canary is not None:
            models[name]["variants"] = {
                variant: describe_variant(weight, canary.variants[variant].load())
                for variant, weight in canary.weights.items()
            }
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    if state.drain.is_draining:
        draining: Health = {"status": "draining", "models": models}
        return JSONResponse(draining, status_code=503, headers=retry)
    problem = await state.gatekeeper.dependency_problem()
    if problem is not None:
        body: Health = {"status": "unavailable", "reason": problem, "models": models}
        return JSONResponse(body, status_code=503, headers=retry)
    ok: Health = {"status": "ok", "models": models}
    return JSONResponse(ok)


class Live(TypedDict):
    status: str


class Version(TypedDict):
    version: str


@router.get("/live", response_model=None)
async def live() -> Live:
    """Liveness: 200 as long as the process serves HTTP, draining or not."""
    return {"status": "alive"}


@router.get("/version", response_model=None)
async def version() -> Version:
    """The llmserve version."""
    return {"version": __version__}

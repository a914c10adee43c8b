"""GET /v1/models and GET /v1/models/{model}."""

from __future__ import annotations

from typing import Literal, TypedDict

from fastapi import APIRouter, Request

from llmserve.api.admission import ServerState, server_state
from llmserve.errors import ModelNotFoundError
from llmserve.types import ModelInfo

router = APIRouter()


class ModelCard(TypedDict):
    """OpenAI's model object."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelCard]


def model_card(info: ModelInfo, state: ServerState) -> ModelCard:
    """OpenAI's model object; `created` is when this server began serving it, unless known."""
    created = info.created or state.started_at
    return {"id": info.name, "object": "model", "created": created, "owned_by": info.owned_by}


@router.get("/v1/models", response_model=None)
async def list_models(request: Request) -> ModelList:
    """The models this caller may use; any bearer value gets 200 (for ChatAnyscale)."""
    state = server_state(request)
    principal = await state.gatekeeper.authenticate_for_listing(
        request.headers.get("authorization")
    )
    public = {m.name for m in state.config.models if m.public}
    names = [
        name
        for name in state.backends
        if (principal.can_use_model(name) if principal is not None else name in public)
    ]
    return {"object": "list", "data": [model_card(state.backends[n].info, state) for n in names]}


@router.get("/v1/models/{model:path}", response_model=None)
async def retrieve_model(model: str, request: Request) -> ModelCard:
    """One model; 404 model_not_found when unknown or not open to this caller."""
    state = server_state(request)
    principal = await state.gatekeeper.authenticate(request.headers.get("authorization"))
    backend = state.backends.get(model)
    if backend is None or not principal.can_use_model(model):
        raise ModelNotFoundError(model, param=None)
    return model_card(backend.info, state)

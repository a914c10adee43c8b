"""GET /v1/models and GET /v1/models/{model}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from llmserve.api.access.model_cards import ModelCard, ModelList, model_card, visible_models
from llmserve.api.admission import server_state
from llmserve.errors import ModelNotFoundError

router = APIRouter()


@router.get("/v1/models", response_model=None)
async def list_models(request: Request) -> ModelList:
    """The models this caller may use; any bearer value gets 200 (for ChatAnyscale)."""
    return await visible_models(request)


@router.get("/v1/models/{model:path}", response_model=None)
async def retrieve_model(model: str, request: Request) -> ModelCard:
    """One model; 404 model_not_found when unknown or not open to this caller."""
    state = server_state(request)
    principal = await state.gatekeeper.authenticate(request.headers.get("authorization"))
    backend = state.backends.get(model)
    if backend is None or not principal.can_use_model(model):
        raise ModelNotFoundError(model, param=None)
    return model_card(backend.info, state)

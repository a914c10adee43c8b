"""OpenAI's model objects, and which models a caller may see (/v1/models, the playground)."""

from __future__ import annotations

from typing import Literal, TypedDict

from fastapi import Request

from llmserve.api.admission import ServerState, server_state
from llmserve.types import ModelInfo


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


async def visible_models(request: Request) -> ModelList:
    """The models this caller may use (anonymous: the public ones); any bearer value may list."""
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

"""GET and PUT /admin/models/{model}/variants: the live weights of a canary model.

Guarded by the admin key like the rest of /admin. A change applies to requests routed after it;
streams already running keep their variant to the end.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field

from llmserve.api.admission import server_state
from llmserve.api.http.json_body import parse_json_body
from llmserve.api.http.openapi import request_body
from llmserve.backends.base import Canary
from llmserve.errors import InvalidRequestError, NotFoundError
from llmserve.serving.schemas import StrictModel

router = APIRouter(prefix="/admin")


class VariantWeight(StrictModel):
    """One variant's new weight (0 or more; the shares are weight / sum of weights)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    weight: Annotated[float, Field(ge=0, le=1e9)]


class SetVariantsRequest(StrictModel):
    """The body of PUT /admin/models/{model}/variants: a weight for each variant."""

    model_config = ConfigDict(extra="forbid")

    variants: list[VariantWeight] = Field(min_length=1, max_length=64)


class VariantObject(TypedDict):
    name: str
    weight: float


class VariantsObject(TypedDict):
    model: str
    variants: list[VariantObject]


async def canary_backend(request: Request, model: str) -> Canary:
    """The variants of `model`, once the caller is the admin (401 / 403 / 404 otherwise)."""
    state = server_state(request)
    await state.gatekeeper.authenticate_admin(request.headers.get("authorization"))
    backend = state.backends.get(model)
    canary = None if backend is None else backend.canary
    if canary is None:
        raise NotFoundError(f"The model `{model}` does not exist or has no variants.")
    return canary


def describe(backend: Canary) -> VariantsObject:
    weights = backend.weights
    return {
        "model": backend.name,
        "variants": [{"name": n, "weight": w} for n, w in weights.items()],
    }


@router.get("/models/{model:path}/variants", response_model=None)
async def get_variants(model: str, request: Request) -> VariantsObject:
    """The current weight of each variant of `model`."""
    return describe(await canary_backend(request, model))


@router.put(
    "/models/{model:path}/variants",
    openapi_extra=request_body(SetVariantsRequest),
    response_model=None,
)
async def set_variants(model: str, request: Request) -> VariantsObject:
    """Set the weight of each variant of `model`; new requests follow at once."""
    backend = await canary_backend(request, model)
    body = await parse_json_body(request, SetVariantsRequest)
    weights = {v.name: v.weight for v in body.variants}
    if len(weights) != len(body.variants):
        raise InvalidRequestError("Each variant may be named only once.", param="variants")
    try:
        await backend.set_weights(weights)
    except ValueError as exc:
        raise InvalidRequestError(f"Invalid 'variants': {exc}.", param="variants") from None
    return describe(backend)

"""The admin API under /admin: create, list and revoke API keys; read usage.

Guarded by the admin key (`auth.admin_key` or `$LLMSERVE_ADMIN_KEY`): 401 without a valid key,
403 for an ordinary API key or when no admin key is configured.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmserve.api.admission import server_state
from llmserve.api.errors import from_pydantic
from llmserve.auth.gatekeeper import KeyGatekeeper, bearer_token
from llmserve.auth.keys import KeySpec, describe_key, hash_secret, hashes_match, parse_duration
from llmserve.auth.store import DuplicateKeyNameError, UnknownKeyError, describe_usage
from llmserve.config import AuthConfig
from llmserve.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)

router = APIRouter(prefix="/admin")


class CreateKeyRequest(BaseModel):
    """The body of POST /admin/keys."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    max_concurrency: int | None = Field(default=None, ge=1)
    models: list[str] | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    expires: str | None = None  # "30d", "12h", ...


def admin_key(config: AuthConfig) -> str | None:
    """The configured admin key, from the config or the environment."""
    return config.admin_key or os.environ.get("LLMSERVE_ADMIN_KEY") or None


def require_admin(request: Request) -> KeyGatekeeper:
    """The gatekeeper, once the caller proved to hold the admin key."""
    state = server_state(request)
    gatekeeper = state.gatekeeper
    expected = admin_key(state.config.auth)
    if expected is None or not isinstance(gatekeeper, KeyGatekeeper):
        raise PermissionDeniedError(
            "The admin API is disabled: set LLMSERVE_ADMIN_KEY (or auth.admin_key) to enable it."
        )
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise AuthenticationError("The admin API needs the admin key as a Bearer token.")
    if hashes_match(hash_secret(token), hash_secret(expected)):
        return gatekeeper
    if gatekeeper.store.find_by_hash(hash_secret(token)) is not None:
        raise PermissionDeniedError("This API key may not use the admin API.")
    raise AuthenticationError("Incorrect admin key provided.")


async def parse_create(request: Request) -> KeySpec:
    """The key spec of a POST /admin/keys body; 400 naming the field otherwise."""
    try:
        body = CreateKeyRequest.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        raise from_pydantic(exc) from None
    try:
        expires_in = None if body.expires is None else parse_duration(body.expires)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="expires") from None
    default = server_state(request).config.auth.default_max_concurrency
    return KeySpec(
        name=body.name,
        max_concurrency=body.max_concurrency or default,
        allowed_models=frozenset(body.models) if body.models else None,
        rpm=body.rpm,
        tpm=body.tpm,
        expires_in_s=expires_in,
    )


@router.post("/keys", status_code=201)
async def create_key(request: Request) -> dict[str, Any]:
    """Make a key; the response is the only time its secret is shown."""
    gatekeeper = require_admin(request)
    spec = await parse_create(request)
    try:
        key, secret = await gatekeeper.create_key(spec)
    except DuplicateKeyNameError as exc:
        raise InvalidRequestError(str(exc), param="name") from None
    return {**describe_key(key), "key": secret, "in_flight": 0}


@router.get("/keys")
async def list_keys(request: Request) -> dict[str, Any]:
    """Every key (revoked and expired ones included) with its requests in flight."""
    gatekeeper = require_admin(request)
    data = [
        {**describe_key(key), "in_flight": await gatekeeper.num_in_flight(key.key_id)}
        for key in await gatekeeper.list_keys()
    ]
    return {"object": "list", "data": data}


@router.delete("/keys/{name}")
async def revoke_key(name: str, request: Request) -> JSONResponse:
    """Revoke the active key called `name`; its next request gets 401."""
    gatekeeper = require_admin(request)
    try:
        key = await gatekeeper.revoke_key(name)
    except UnknownKeyError as exc:
        raise NotFoundError(str(exc)) from None
    return JSONResponse({**describe_key(key), "deleted": True})


@router.get("/usage")
async def usage(request: Request, key: str | None = None) -> dict[str, Any]:
    """Usage totals per key and model (`?key=NAME` for one key)."""
    gatekeeper = require_admin(request)
    rows = await gatekeeper.usage(key)
    return {"object": "list", "data": [describe_usage(row) for row in rows]}

"""The admin API under /admin: create, list and revoke API keys; read usage.

Guarded by the admin key (`auth.admin_key` or `$LLMSERVE_ADMIN_KEY`): 401 without a valid key,
403 for an ordinary API key or when no admin key is configured.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal, TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from llmserve.api.access.admin_access import KeyInFlight, Limit, require_admin
from llmserve.api.access.jobs_access import jobs_of
from llmserve.api.access.usage_query import UsageBucketList, parse_bucket, parse_since
from llmserve.api.admission import server_state
from llmserve.api.http.json_body import parse_json_body
from llmserve.api.http.openapi import request_body
from llmserve.auth.keys import (
    MAX_MODEL_NAME_LENGTH,
    MAX_NAME_LENGTH,
    KeySpec,
    KeySpecError,
    describe_key,
    parse_duration,
)
from llmserve.auth.store import (
    DuplicateKeyNameError,
    UnknownKeyError,
    UsageObject,
    describe_usage,
)
from llmserve.auth.usage_buckets import describe_bucket
from llmserve.errors import (
    InvalidRequestError,
    NotFoundError,
)
from llmserve.serving.schemas import StrictModel

router = APIRouter(prefix="/admin")


ModelName = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME_LENGTH)]


class CreateKeyRequest(StrictModel):
    """The body of POST /admin/keys (`KeySpec` checks what a JSON schema cannot say)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    max_concurrency: Limit | None = None  # None: auth.default_max_concurrency
    models: Annotated[list[ModelName], Field(min_length=1)] | None = None  # None: every model
    rpm: Limit | None = None
    tpm: Limit | None = None
    expires: str | None = Field(default=None, max_length=32, examples=["30d", "12h", "90m"])
    cache_group: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    max_storage_mb: Limit | None = None  # None: jobs.max_storage_mb_per_key


class CreatedKey(KeyInFlight):
    key: str  # the secret: shown once, in this response only


class KeyList(TypedDict):
    object: Literal["list"]
    data: list[KeyInFlight]


class UsageList(TypedDict):
    object: Literal["list"]
    data: list[UsageObject]


async def parse_create(request: Request) -> KeySpec:
    """The key spec of a POST /admin/keys body; 400 naming the field otherwise."""
    body = await parse_json_body(request, CreateKeyRequest)
    try:
        expires_in = None if body.expires is None else parse_duration(body.expires)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="expires") from None
    default = server_state(request).config.auth.default_max_concurrency
    try:
        return KeySpec(
            name=body.name,
            max_concurrency=default if body.max_concurrency is None else body.max_concurrency,
            allowed_models=None if body.models is None else frozenset(body.models),
            rpm=body.rpm,
            tpm=body.tpm,
            expires_in_s=expires_in,
            cache_group=body.cache_group,
            max_storage_mb=body.max_storage_mb,
        )
    except KeySpecError as exc:
        raise InvalidRequestError(f"Invalid '{exc.field}': {exc}.", param=exc.field) from None


@router.post(
    "/keys", status_code=201, openapi_extra=request_body(CreateKeyRequest), response_model=None
)
async def create_key(request: Request) -> CreatedKey:
    """Make a key; the response is the only time its secret is shown."""
    gatekeeper = await require_admin(request)
    spec = await parse_create(request)
    try:
        key, secret = await gatekeeper.create_key(spec)
    except DuplicateKeyNameError as exc:
        raise InvalidRequestError(str(exc), param="name") from None
    return {**describe_key(key), "key": secret, "in_flight": 0}


@router.get("/keys", response_model=None)
async def list_keys(request: Request) -> KeyList:
    """Every key (revoked and expired ones included) with its requests in flight."""
    gatekeeper = await require_admin(request)
    data: list[KeyInFlight] = [
        {**describe_key(key), "in_flight": await gatekeeper.num_in_flight(key.key_id)}
        for key in await gatekeeper.list_keys()
    ]
    return {"object": "list", "data": data}


@router.delete("/keys/{name:path}")  # a key name may hold a "/"
async def revoke_key(name: str, request: Request) -> JSONResponse:
    """Revoke the active key called `name`; its next request gets 401."""
    gatekeeper = await require_admin(request)
    try:
        key = await gatekeeper.revoke_key(name)
    except UnknownKeyError as exc:
        raise NotFoundError(str(exc)) from None
    jobs = jobs_of(request)
    await jobs.call(jobs.store.cancel_jobs_of, key.key_id, int(time.time()))  # its jobs end too
    return JSONResponse({**describe_key(key), "deleted": True})


@router.get("/usage", response_model=None)
async def usage(
    request: Request, key: str | None = None, since: str | None = None, bucket: str | None = None
) -> UsageList | UsageBucketList:
    """Usage totals per key and model (`?key=NAME` for one key); with `bucket=hour|day`, per
    hour or day from `since` on (see usage_query.py)."""
    gatekeeper = await require_admin(request)
    if bucket is None and since is None:
        rows = await gatekeeper.usage(key)
        return {"object": "list", "data": [describe_usage(row) for row in rows]}
    width = parse_bucket(bucket or "hour")
    start = parse_since(since, width)
    buckets = await gatekeeper.bucketed_usage(width, start, key)
    data = [describe_bucket(row) for row in buckets]
    return {"object": "list", "bucket": width, "since": start, "data": data}

"""The admin console (`GET /admin/ui`) and the admin endpoints it needs beyond the key API.

- `PATCH /admin/keys/{name}`: change a key's max_concurrency, rpm or tpm (null clears rpm/tpm).
- `GET /admin/load`: per model, requests running and waiting, KV-cache use, tokens/s (and each
  canary's variant weights); per active key, slots in use against its limit.
- `GET /admin/batches`: every key's batches with their owner; `POST /admin/batches/{id}/cancel`.

Each answers 401 without the admin key. The page's own files carry no data and need no key.
"""

from __future__ import annotations

import time
from typing import Literal, TypedDict

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ConfigDict, Field

from llmserve.api.access.admin_access import KeyInFlight, Limit, require_admin
from llmserve.api.access.jobs_access import JsonBody, jobs_of, list_body, page_limit
from llmserve.api.access.web_files import web_file
from llmserve.api.admission import ServerState, server_state
from llmserve.api.http.json_body import parse_json_body
from llmserve.api.http.openapi import request_body
from llmserve.auth.keys import describe_key
from llmserve.auth.store import UnknownKeyError
from llmserve.errors import NotFoundError
from llmserve.jobs.batches import cancel_batch
from llmserve.jobs.objects import batch_object
from llmserve.jobs.store import BatchRecord
from llmserve.metrics import PREFIX
from llmserve.serving.schemas import StrictModel

router = APIRouter(prefix="/admin")
UI_FILES = ("admin.js", "admin.css")


@router.get("/ui", response_class=HTMLResponse)
async def console() -> Response:
    """The admin console page (it asks for the admin key itself)."""
    return web_file("admin.html")


@router.get("/ui/{name}")
async def console_file(name: str) -> Response:
    """The console's script and style."""
    if name not in UI_FILES:
        raise NotFoundError(f"No admin console file named `{name}`.")
    return web_file(name)


class UpdateLimitsRequest(StrictModel):
    """The body of PATCH /admin/keys/{name}: the limits to change (null: no rpm / tpm limit)."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: Limit | None = None
    rpm: Limit | None = Field(default=None)
    tpm: Limit | None = Field(default=None)


@router.patch(
    "/keys/{name:path}", openapi_extra=request_body(UpdateLimitsRequest), response_model=None
)
async def update_limits(name: str, request: Request) -> KeyInFlight:
    """Change the limits of the active key `name`; its next request is admitted under them."""
    gatekeeper = await require_admin(request)
    body = await parse_json_body(request, UpdateLimitsRequest)
    limits = {field: getattr(body, field) for field in body.model_fields_set}
    if limits.get("max_concurrency", 1) is None:
        limits.pop("max_concurrency")  # NOTE: every key has a concurrency limit
    try:
        key = await gatekeeper.update_limits(name, limits)
    except UnknownKeyError as exc:
        raise NotFoundError(str(exc)) from None
    return {**describe_key(key), "in_flight": await gatekeeper.num_in_flight(key.key_id)}


class ModelLive(TypedDict):
    model: str
    num_running: int
    num_waiting: int
    max_running: int | None
    kv_cache_usage: float
    generation_tokens: int  # since start
    tokens_per_second: float  # generated, since the previous GET /admin/load (0 on the first)
    variants: dict[str, float] | None  # canary models: each variant's weight


class KeyLive(TypedDict):
    id: str
    name: str
    in_flight: int
    max_concurrency: int


class LoadObject(TypedDict):
    object: Literal["admin.load"]
    time: float
    models: list[ModelLive]
    keys: list[KeyLive]


class TokenRates:
    """Tokens/s of each model between two reads of its generation counter."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}  # model -> (time, tokens)

    def rate(self, model: str, tokens: float, now: float) -> float:
        before = self._last.get(model)
        self._last[model] = (now, tokens)
        if before is None or now <= before[0]:
            return 0.0
        return max(0.0, (tokens - before[1]) / (now - before[0]))


def token_rates(request: Request) -> TokenRates:
    rates: TokenRates | None = getattr(request.app.state, "admin_token_rates", None)
    if rates is None:
        rates = request.app.state.admin_token_rates = TokenRates()
    return rates


def model_load(state: ServerState, rates: TokenRates, name: str, now: float) -> ModelLive:
    backend = state.backends[name]
    load = backend.load()
    labels = {"model_name": name}
    tokens = state.metrics.registry.get_sample_value(f"{PREFIX}generation_tokens_total", labels)
    variants = None if backend.canary is None else backend.canary.weights
    return {
        "model": name,
        "num_running": load.num_running,
        "num_waiting": load.num_waiting,
        "max_running": load.max_running,
        "kv_cache_usage": load.kv_cache_usage,
        "generation_tokens": int(tokens or 0),
        "tokens_per_second": round(rates.rate(name, tokens or 0.0, now), 2),
        "variants": variants,
    }


@router.get("/load", response_model=None)
async def live_load(request: Request) -> LoadObject:
    """What runs now: per model and per active key."""
    gatekeeper = await require_admin(request)
    state = server_state(request)
    now = time.time()
    rates = token_rates(request)
    models = [model_load(state, rates, name, now) for name in state.backends]
    keys: list[KeyLive] = [
        {
            "id": key.key_id,
            "name": key.name,
            "in_flight": await gatekeeper.num_in_flight(key.key_id),
            "max_concurrency": key.max_concurrency,
        }
        for key in await gatekeeper.list_keys()
        if key.is_usable()
    ]
    return {"object": "admin.load", "time": now, "models": models, "keys": keys}


@router.get("/batches")
async def all_batches(request: Request) -> JsonBody:
    """Every key's batches, newest first (`after`, `limit` up to 100), each with its `owner`."""
    gatekeeper = await require_admin(request)
    jobs = jobs_of(request)
    after = request.query_params.get("after")
    page = await jobs.call(jobs.store.list_batches, None, after=after, limit=page_limit(request))
    names = {key.key_id: key.name for key in await gatekeeper.list_keys()}

    def with_owner(record: BatchRecord) -> dict[str, object]:
        owner = {"id": record.owner, "name": names.get(record.owner)}
        return {**batch_object(record), "owner": owner}

    return list_body(page, with_owner)


@router.post("/batches/{batch_id}/cancel")
async def cancel(batch_id: str, request: Request) -> JsonBody:
    """Cancel any key's batch (as `POST /v1/batches/{id}/cancel` does for its owner)."""
    await require_admin(request)
    jobs = jobs_of(request)
    return batch_object(await jobs.call(cancel_batch, jobs, None, batch_id))

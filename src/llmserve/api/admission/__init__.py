"""Admission for every `/v1` generation-like route: authenticate → parse → route → validate → admit.

Usage from a route (chat, completions, embeddings, responses all follow it):

    routed = await route_request(request, MyRequestSchema, kind="chat")   # 401 / 400 / 404
    ...validate and count tokens with routed.backend (400 context_length_exceeded)...
    slot = await acquire_slot(request, routed, estimated_tokens)           # 429 / 503
    try:
        ...produce the body...
    finally:
        await slot.release(UsageRecord(model=routed.model, ...))

For streaming, hand the slot to `api.sse.sse_body`, which releases it after the last byte, on
error and on client disconnect. Everything that can fail happens before the first byte of a 200.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fastapi import Request
from starlette.requests import HTTPConnection

from llmserve.api.admission.admitted import AdmittedSlot
from llmserve.api.admission.drain import Drain
from llmserve.api.admission.queue_gauge import QueueGauge
from llmserve.api.http.json_body import parse_json_body
from llmserve.api.http.request_log import note_caller
from llmserve.api.http.request_metrics import counting_rejections
from llmserve.api.http.variants import mark_variant
from llmserve.auth.base import Gatekeeper, Principal, Slot
from llmserve.backends.base import Backend
from llmserve.config import ServerConfig
from llmserve.metrics import ServerMetrics
from llmserve.serving.context import ServingContext
from llmserve.serving.routing import resolve_backend
from llmserve.serving.schemas import ModelRequest
from llmserve.types import ModelKind

M = TypeVar("M", bound=ModelRequest)


@dataclass(frozen=True)
class ServerState:
    """What the routes share, stored on `app.state.llmserve` by `create_app`."""

    config: ServerConfig
    backends: Mapping[str, Backend]
    gatekeeper: Gatekeeper
    metrics: ServerMetrics  # GET /metrics
    drain: Drain = field(default_factory=Drain)  # stops admission on SIGTERM (api/runner.py)
    queue: QueueGauge = field(default_factory=QueueGauge)  # admitted requests, per model
    started_at: int = field(default_factory=lambda: int(time.time()))  # `created` of models


@dataclass(frozen=True)
class Routed(Generic[M]):
    """An authenticated, parsed request and the backend that serves its model."""

    principal: Principal
    body: M
    backend: Backend
    request_id: str
    variant: str | None = None  # the canary variant chosen for the caller (x-llmserve-variant)

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        return self.body.model

    @property
    def context(self) -> ServingContext:
        """What the serving layer needs to know about this request besides its body."""
        return ServingContext(
            self.request_id,
            self.principal.key_id,
            self.model,
            self.backend,
            cache_namespace=self.principal.cache_namespace,
        )


def server_state(request: HTTPConnection) -> ServerState:
    """The shared state of the app serving `request`."""
    state: ServerState = request.app.state.llmserve
    return state


def request_id_of(request: Request) -> str:
    """The id the request-id middleware gave this request."""
    return str(request.state.request_id)


async def route_request(request: Request, schema: type[M], *, kind: ModelKind | None) -> Routed[M]:
    """Authenticate the caller, parse the body and resolve the backend (a canary's variant once)."""
    state = server_state(request)
    principal = await state.gatekeeper.authenticate(request.headers.get("authorization"))
    body = await parse_json_body(request, schema)  # 400: content type, JSON, schema
    note_caller(request, principal.key_id, body.model)  # for the request log
    resolved = await resolve_backend(state.backends, principal, body.model, kind=kind)
    if resolved.variant is not None:
        mark_variant(request, resolved.variant)
    return Routed(principal, body, resolved.backend, request_id_of(request), resolved.variant)


async def acquire_slot(request: HTTPConnection, routed: Routed[M], estimated_tokens: int) -> Slot:
    """Admit the request within the backend's queue and the caller's limits (503 / 429): one
    `AdmittedSlot` holding the key's slot, the queue ticket, the key's metrics and the drain count.

    The request counts in `state.queue` from its queue check until its slot is released.
    """
    state = server_state(request)
    key_id = routed.principal.key_id
    max_queue = state.config.limits.max_queue
    with counting_rejections(state.metrics, key_id, routed.model):  # 429s and 503s per key
        state.drain.check_admitting()  # 503 once the server is shutting down
        ticket = state.queue.admit(routed.model, routed.backend.load(), max_queue)
        try:
            slot = await state.gatekeeper.acquire(routed.principal, routed.model, estimated_tokens)
        except BaseException:
            ticket.leave()
            raise
    return AdmittedSlot(
        slot, ticket, state.metrics, state.drain,
        key_id=key_id, model=routed.model, variant=routed.variant, notes=request.state,
    )  # fmt: skip

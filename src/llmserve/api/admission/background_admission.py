"""Admission of a `background: true` response: one of its key's requests, like any other.

It takes a slot of the key's `max_concurrency` at creation (counting against rpm and tpm there,
so a creation over a limit is the usual 429 `rate_limit_exceeded`) and holds it, in
`Jobs.slots`, until the response ends (jobs/background_slots.py).
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request

from llmserve.api.admission import Routed, server_state
from llmserve.api.http.request_metrics import counting_rejections
from llmserve.auth.base import Slot
from llmserve.serving.schemas import ModelRequest

M = TypeVar("M", bound=ModelRequest)


async def acquire_background_slot(
    request: Request, routed: Routed[M], estimated_tokens: int
) -> Slot:
    """The key's slot for a background response (429 over a limit, counted in /metrics)."""
    state = server_state(request)
    with counting_rejections(state.metrics, routed.principal.key_id, routed.model):
        return await state.gatekeeper.acquire(routed.principal, routed.model, estimated_tokens)

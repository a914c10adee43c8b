"""What a canary model adds to a request: the `x-llmserve-variant` header, usage per variant.

The route picks the variant (`VariantBackend.choose`) when it finds the model's backend and
marks the request with it; this middleware then puts the header on every answer to that request
(errors and streams included), and `VariantSlot` records the request's usage under
`MODEL@VARIANT` so that `/admin/usage` keeps each variant apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.auth.base import Slot, UsageRecord
from llmserve.serving.routing import VARIANT_HEADER, variant_usage

STATE_KEY = "llmserve_variant"


def mark_variant(request: Request, variant: str) -> None:
    """Remember that `request` runs on `variant` (read by the middleware)."""
    setattr(request.state, STATE_KEY, variant)


class VariantSlot:
    """A slot whose usage records name the variant; everything else is the wrapped slot's."""

    def __init__(self, slot: Slot, variant: str) -> None:
        self._slot = slot
        self._variant = variant

    @property
    def headers(self) -> Mapping[str, str]:
        return self._slot.headers

    def report(self, usage: UsageRecord) -> None:
        self._slot.report(self._named(usage))

    async def release(self, usage: UsageRecord) -> None:
        await self._slot.release(self._named(usage))

    def _named(self, usage: UsageRecord) -> UsageRecord:
        return variant_usage(usage, self._variant)


class VariantHeaderMiddleware:
    """Adds `x-llmserve-variant` to the answer of a request marked with a variant."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_variant(message: Message) -> None:
            variant = state.get(STATE_KEY)
            if message["type"] == "http.response.start" and variant is not None:
                headers = [*message.get("headers", []), (VARIANT_HEADER.encode(), variant.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_variant)

"""What a canary model adds to an HTTP answer: the `x-llmserve-variant` header.

The route resolves the variant (`serving/routing.resolve_backend`) and marks the request with
it; this middleware then puts the header on every answer to that request (errors and streams
included). The admitted request records its usage under `MODEL@VARIANT` (api/admission/admitted.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.serving.routing import VARIANT_HEADER

STATE_KEY = "llmserve_variant"


def mark_variant(request: Request, variant: str) -> None:
    """Remember that `request` runs on `variant` (read by the middleware)."""
    setattr(request.state, STATE_KEY, variant)


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

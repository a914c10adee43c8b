"""A request body costs at most `limits.max_request_body_mb` and `limits.body_timeout_s`.

A body announced larger than the limit is refused with 413 before a byte of it is read; a chunked
body is refused as soon as it grows past the limit. A client that sends headers and then stalls
gets 408 instead of holding a connection (and a worker) forever.

Routes named in `own_limit_paths` (file uploads, far larger than any JSON body) bound the size of
their bodies themselves; the timeout still applies to them.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.api.http.errors import error_response
from llmserve.errors import BodyTimeoutError, RequestTooLargeError


class BodyLimitMiddleware:
    """Bounds the size of every request body and the time it may take to arrive."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        timeout_s: float,
        own_limit_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.own_limit_paths = own_limit_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = None if scope["path"] in self.own_limit_paths else self.max_bytes
        if max_bytes is not None and announced_length(scope) > max_bytes:
            # NOTE: the route never runs, so nothing reads the body; uvicorn discards it.
            await error_response(RequestTooLargeError(max_bytes))(scope, receive, send)
            return
        await self.app(scope, self.bounded(receive, max_bytes), send)

    def bounded(self, receive: Receive, max_bytes: int | None) -> Receive:
        """`receive` that raises once the body is too large or too slow; then passes through."""
        num_bytes = 0
        is_body_complete = False

        async def receive_bounded() -> Message:
            nonlocal num_bytes, is_body_complete
            if is_body_complete:  # later receives wait for a disconnect: no deadline there
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise BodyTimeoutError(self.timeout_s) from None
            if message["type"] == "http.request":
                num_bytes += len(message.get("body", b""))
                if max_bytes is not None and num_bytes > max_bytes:
                    raise RequestTooLargeError(max_bytes)
                is_body_complete = not message.get("more_body", False)
            else:
                is_body_complete = True
            return message

        return receive_bounded


def announced_length(scope: Scope) -> int:
    """The Content-Length the client announced, or 0 when it sent none (or nonsense)."""
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdecimal() else 0

"""Request ids on every response, and the last-resort 500 for unexpected exceptions.

The id the server works with (engine requests, stored responses, logs) is always made here; a
client's `x-request-id` is only echoed and logged, never trusted as a key: two clients may send
the same one.
"""

from __future__ import annotations

import logging
import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.api.http.errors import error_response, server_error
from llmserve.ids import new_request_id as new_request_id  # the id a route may make itself

logger = logging.getLogger(__name__)

_CLIENT_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces


class RequestIdMiddleware:
    """Make `request.state.request_id`; answer with the client's `x-request-id`, else with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        echoed = _client_request_id(scope, request_id) or request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["x-request-id"] = echoed
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            if started:
                raise
            await error_response(server_error(request_id))(scope, receive, send_with_id)


def _client_request_id(scope: Scope, request_id: str) -> str | None:
    """The client's `x-request-id` when it is printable ASCII; logged beside the server's id."""
    sent = Headers(scope=scope).get("x-request-id", "")
    if not _CLIENT_REQUEST_ID.match(sent):
        return None
    logger.info("request %s has x-request-id %s", request_id, sent)
    return sent

"""One log line per request: request id, key id (never the secret), model, status, tokens, latency.

`RequestLogMiddleware` sits inside the request-id middleware. It notes the arrival time (time to
first token is measured from it), and when the response is done it logs the line and counts the
request against its key in `llmserve:api_key_requests_total`. Routes note who called for which
model with `note_caller`; the admitted slot notes the usage when it is released
(api/admission/admitted.py).
Probes and scrapes (/health, /live, /metrics) log at DEBUG only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.auth.base import UsageRecord
from llmserve.metrics import ServerMetrics

logger = logging.getLogger("llmserve.requests")
QUIET_PATHS = frozenset({"/health", "/live", "/metrics"})
MAX_MODEL_CHARS = 200  # a model name is the client's text: logged, but bounded


def note_caller(request: Request, key_id: str, model: str) -> None:
    """Remember the caller's key id and the model asked for, for the request log."""
    request.state.key_id = key_id
    request.state.model = model[:MAX_MODEL_CHARS]


def format_fields(fields: dict[str, Any]) -> str:
    """`key=value` pairs; values with spaces or quotes are quoted."""
    parts = []
    for key, value in fields.items():
        text = "-" if value is None else str(value)
        if not text or any(c.isspace() or c == '"' for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class RequestLogMiddleware:
    """Log every HTTP request once it is answered, and count it against its key."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["arrived_at"] = time.monotonic()
        status = 500  # an exception escaping the app becomes a 500 in the request-id middleware

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._finish(scope, state, status)

    def _finish(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        fields = request_fields(scope, state, status)
        level = logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO
        logger.log(level, format_fields(fields), extra={"fields": fields})
        key_id = state.get("key_id")
        if key_id is not None:
            labels = (self.metrics.key_label(key_id), self.metrics.model_label(state.get("model")))
            self.metrics.key_requests.labels(*labels, str(status)).inc()


def request_fields(scope: Scope, state: dict[str, Any], status: int) -> dict[str, Any]:
    """What the log line says about one request."""
    usage = state.get("usage")
    prompt_tokens, completion_tokens = (
        (usage.prompt_tokens, usage.completion_tokens)
        if isinstance(usage, UsageRecord)
        else (None, None)
    )
    return {
        "request_id": state.get("request_id"),
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "key_id": state.get("key_id"),
        "model": state.get("model"),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_s": round(time.monotonic() - state["arrived_at"], 4),
    }

"""What an endpoint needs to know besides the request itself: who asks, under which id, where."""

from __future__ import annotations

from dataclasses import dataclass

from llmserve.backends.base import Backend
from llmserve.types import Priority


@dataclass(frozen=True)
class ServingContext:
    """The caller, the server-made request id and the backend serving the requested model."""

    request_id: str  # made by the server (never the client's x-request-id)
    tenant: str  # the caller's API key id; "" for an anonymous caller
    model: str  # the model name the client asked for
    backend: Backend
    priority: Priority = Priority.INTERACTIVE  # batch lines and background jobs run lower

"""What an endpoint needs to know besides the request itself: who asks, under which id, where."""

from __future__ import annotations

from dataclasses import dataclass

from llmserve.backends.base import Backend
from llmserve.serving.cache_namespace import ANONYMOUS_NAMESPACE, key_namespace, salted
from llmserve.types import Priority


@dataclass(frozen=True)
class ServingContext:
    """The caller, the server-made request id and the backend serving the requested model."""

    request_id: str  # made by the server (never the client's x-request-id)
    tenant: str  # the caller's API key id; "" for an anonymous caller
    model: str  # the model name the client asked for
    backend: Backend
    priority: Priority = Priority.INTERACTIVE  # batch lines and background jobs run lower
    # The caller's prefix-cache namespace (serving/cache_namespace.py); None: the tenant's own.
    cache_namespace: str | None = None

    def request_namespace(self, cache_salt: str | None) -> str:
        """The namespace of a request with `cache_salt`: the caller's, or one inside it."""
        base = self.cache_namespace
        if base is None:
            base = key_namespace(self.tenant, None) if self.tenant else ANONYMOUS_NAMESPACE
        return salted(base, cache_salt)

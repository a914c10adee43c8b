"""The seam between the API layer and multi-tenancy: who is calling, and may they start now.

The API layer calls, for every `/v1` request: `authenticate` → `acquire` (before any byte of a
200) → work → `Slot.release` in a `finally` (after the last byte of a stream, on error, on client
disconnect, on timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

ANONYMOUS_KEY_ID = "anonymous"


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    key_id: str  # stable id of the API key (never the key itself); ANONYMOUS_KEY_ID when open
    name: str
    allowed_models: frozenset[str] | None = None  # None: every model
    max_concurrency: int | None = None  # None: unlimited
    cache_group: str | None = None  # keys of one group share their prefix cache
    max_storage_mb: int | None = None  # None: jobs.max_storage_mb_per_key

    @property
    def cache_namespace(self) -> str:
        """Whose prefix-cache blocks this caller may reuse (serving/cache_namespace.py)."""
        if self.is_anonymous:
            return "anonymous"
        return f"group:{self.cache_group}" if self.cache_group else f"key:{self.key_id}"

    @property
    def is_anonymous(self) -> bool:
        """True when the server is open and the caller presented no key."""
        return self.key_id == ANONYMOUS_KEY_ID

    def can_use_model(self, model: str) -> bool:
        """Whether this key may use `model` (else it is 404 model_not_found for this key)."""
        return self.allowed_models is None or model in self.allowed_models


@dataclass(frozen=True)
class UsageRecord:
    """What one request cost: so far while it runs (`Slot.report`), in all once it ended."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    is_error: bool = False


class Slot(Protocol):
    """One admitted request in flight for a key."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The `x-ratelimit-*` headers to send with the response."""
        ...

    def report(self, usage: UsageRecord) -> None:
        """The request's usage so far, while it runs (totals, not increments). Never blocks.

        The gatekeeper records it durably (the first report at once, later ones about once a
        second), so a server killed mid-request still counts the request and its tokens.
        """
        ...

    async def release(self, usage: UsageRecord) -> None:
        """Free the slot and record usage. Idempotent: a second call does nothing."""
        ...


class Gatekeeper(Protocol):
    """Authenticates callers and admits their requests within their limits."""

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller for an `Authorization` header value; raises `AuthenticationError`."""
        ...

    async def authenticate_for_listing(self, authorization: str | None) -> Principal | None:
        """The caller for `GET /v1/models`, which answers 200 for any bearer value.

        Returns None for an unknown key: the listing then shows the public models.
        """
        ...

    async def authenticate_admin(self, authorization: str | None) -> None:
        """Return only for the admin key; 401 without a valid key, 403 for an ordinary key or
        while the admin API is disabled."""
        ...

    async def acquire(self, principal: Principal, model: str, estimated_tokens: int) -> Slot:
        """Admit one request; raises `RateLimitError` (429) or `OverloadedError` (503)."""
        ...

    def record_usage(self, key_id: str, usage: UsageRecord) -> None:
        """Count a finished job's tokens (a batch line, a background response) against the key.

        Jobs hold no slot: they count in the key's usage, never in its requests in flight.
        """
        ...

    async def dependency_problem(self) -> str | None:
        """None while every service admission needs answers (Redis); else what is wrong.

        Cheap enough for every `/health` call (a remote check is cached for a second or so).
        """
        ...

    async def close(self) -> None:
        """Release connections (SQLite, Redis)."""
        ...

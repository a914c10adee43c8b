"""A gatekeeper without keys: every caller is the anonymous principal, nothing is limited."""

from __future__ import annotations

from collections.abc import Mapping

from llmserve.auth.base import ANONYMOUS_KEY_ID, Principal, UsageRecord
from llmserve.errors import PermissionDeniedError

ANONYMOUS = Principal(key_id=ANONYMOUS_KEY_ID, name="anonymous")


class OpenSlot:
    """A slot that limits nothing and counts what it recorded."""

    def __init__(self, gatekeeper: OpenGatekeeper) -> None:
        self._gatekeeper = gatekeeper
        self._released = False

    @property
    def headers(self) -> Mapping[str, str]:
        """No limits, so no x-ratelimit headers."""
        return {}

    def report(self, usage: UsageRecord) -> None:
        """Nothing to store while the request runs: the final record is kept on release."""

    async def release(self, usage: UsageRecord) -> None:
        """Record usage once."""
        if not self._released:
            self._released = True
            self._gatekeeper.num_in_flight -= 1
            self._gatekeeper.usage.append(usage)


class OpenGatekeeper:
    """Admits every caller as anonymous; keeps the usage records (newest last)."""

    def __init__(self) -> None:
        self.num_in_flight = 0
        self.usage: list[UsageRecord] = []

    async def authenticate(self, authorization: str | None) -> Principal:
        """Every caller is anonymous."""
        return ANONYMOUS

    async def authenticate_for_listing(self, authorization: str | None) -> Principal | None:
        """Every caller is anonymous."""
        return ANONYMOUS

    async def authenticate_admin(self, authorization: str | None) -> None:
        raise PermissionDeniedError("This server has no admin API.")

    async def acquire(self, principal: Principal, model: str, estimated_tokens: int) -> OpenSlot:
        """Admit at once."""
        self.num_in_flight += 1
        return OpenSlot(self)

    def record_usage(self, key_id: str, usage: UsageRecord) -> None:
        """Keep a job's usage with the others."""
        self.usage.append(usage)

    async def dependency_problem(self) -> str | None:
        """Nothing to depend on."""
        return None

    async def close(self) -> None:
        """Nothing to close."""

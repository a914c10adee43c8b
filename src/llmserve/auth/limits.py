"""Live per-key limits: requests in flight (slots), requests and tokens per minute.

`LimitState` is checked and updated atomically per acquire: in one process by running without an
`await` between the check and the update (`LocalLimitState`), across processes by one Lua script
in Redis (`redis_limits.RedisLimitState`). RPM and TPM use fixed one-minute windows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

WINDOW_SECONDS = 60.0
Verdict = Literal["ok", "concurrency", "requests", "tokens"]


@dataclass(frozen=True)
class Limits:
    """One key's limits; None means unlimited."""

    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class Admission:
    """The outcome of one acquire, with the numbers the x-ratelimit-* headers report."""

    verdict: Verdict
    num_in_flight: int  # after this acquire (before it when refused)
    requests_used: int  # in the current window, this request included when admitted
    tokens_used: int
    window_reset_s: float  # seconds until the current window ends
    window_id: int

    @property
    def is_admitted(self) -> bool:
        return self.verdict == "ok"


class LimitState(Protocol):
    """Where slots and windows live."""

    needs_renewal: bool  # True when slots are leases that a heartbeat must renew

    async def acquire(self, key_id: str, lease_id: str, limits: Limits, tokens: int) -> Admission:
        """Check every limit and, when all pass, take a slot and count the request atomically."""
        ...

    async def release(self, key_id: str, lease_id: str) -> None:
        """Free a slot (a no-op when it is already gone)."""
        ...

    async def renew(self, key_to_leases: Mapping[str, set[str]]) -> None:
        """Extend the leases this process still holds."""
        ...

    async def add_tokens(self, key_id: str, window_id: int, delta: int) -> None:
        """Correct the window's token count once the real usage is known."""
        ...

    async def num_in_flight(self, key_id: str) -> int:
        """Slots the key holds now, across every process sharing this state."""
        ...

    async def dependency_problem(self) -> str | None:
        """None while the state's store answers; else what is wrong (cheap: /health asks)."""
        ...

    async def close(self) -> None: ...


def judge(
    limits: Limits, num_in_flight: int, requests_used: int, tokens_used: int, tokens: int
) -> Verdict:
    """Which limit (if any) one more request of `tokens` would break."""
    if limits.max_concurrency is not None and num_in_flight >= limits.max_concurrency:
        return "concurrency"
    if limits.rpm is not None and requests_used + 1 > limits.rpm:
        return "requests"
    if limits.tpm is not None and tokens_used + tokens > limits.tpm:
        return "tokens"
    return "ok"


@dataclass
class _Window:
    window_id: int
    requests: int = 0
    tokens: int = 0


class LocalLimitState:
    """Limits of one server process, in memory. Exact: no await between check and update."""

    needs_renewal = False

    def __init__(self) -> None:
        self._key_to_leases: dict[str, set[str]] = {}
        self._key_to_window: dict[str, _Window] = {}

    async def acquire(self, key_id: str, lease_id: str, limits: Limits, tokens: int) -> Admission:
        now = time.time()
        window_id = int(now // WINDOW_SECONDS)
        window = self._key_to_window.get(key_id)
        if window is None or window.window_id != window_id:
            window = self._key_to_window[key_id] = _Window(window_id)
        leases = self._key_to_leases.setdefault(key_id, set())
        verdict = judge(limits, len(leases), window.requests, window.tokens, tokens)
        if verdict == "ok":
            leases.add(lease_id)
            window.requests += 1
            window.tokens += tokens
        reset_s = (window_id + 1) * WINDOW_SECONDS - now
        return Admission(verdict, len(leases), window.requests, window.tokens, reset_s, window_id)

    async def release(self, key_id: str, lease_id: str) -> None:
        leases = self._key_to_leases.get(key_id)
        if leases is not None:
            leases.discard(lease_id)

    async def renew(self, key_to_leases: Mapping[str, set[str]]) -> None:
        return None

    async def add_tokens(self, key_id: str, window_id: int, delta: int) -> None:
        window = self._key_to_window.get(key_id)
        if window is not None and window.window_id == window_id:
            window.tokens = max(0, window.tokens + delta)

    async def num_in_flight(self, key_id: str) -> int:
        return len(self._key_to_leases.get(key_id, ()))

    async def dependency_problem(self) -> str | None:
        return None  # in memory: nothing to reach

    async def close(self) -> None:
        return None

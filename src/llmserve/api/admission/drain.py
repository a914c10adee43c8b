"""Graceful drain: stop admitting, let requests in flight finish, then cut off the rest.

`begin(timeout_s)` (the first SIGTERM or Ctrl-C, see api/runner.py) makes admission answer 503
`server_is_overloaded` and `/health` 503 `draining`; requests already admitted keep running. At
the cut-off (`timeout_s` later, or at once on `cut_off_now`) every generation still running is
cancelled, which aborts it in its backend, and raises `ShutdownCutoffError`: a stream sends it
in-band before `[DONE]`, a non-streaming request answers it as a 503. Slots are released (and
usage recorded) by the same `finally` blocks as on any other end.

Only awaits on the generation run under the cut-off, never a `yield` to the client (as in
api/http/deadline.py): cancelling a generator suspended at a `yield` would hit whoever sends its
bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

from llmserve.errors import DrainingError, ShutdownCutoffError
from llmserve.serving.outputs import close_iterator

T = TypeVar("T")


class Drain:
    """Whether the server still admits requests, and when those in flight are cut off."""

    def __init__(self) -> None:
        self._began_at: float | None = None
        self._cutoff_at: float | None = None  # on the event loop's clock
        self._running: set[asyncio.Timeout] = set()  # one per generation awaiting its backend
        self.num_in_flight = 0  # admitted requests whose slot is not yet fully released

    @property
    def is_draining(self) -> bool:
        """True once a drain began: no new request is admitted."""
        return self._began_at is not None

    @property
    def cutoff_at(self) -> float | None:
        """When requests still running are cut off (loop time), or None while not draining."""
        return self._cutoff_at

    def check_admitting(self) -> None:
        """Raise 503 `DrainingError` while draining."""
        if self.is_draining:
            raise DrainingError()

    def enter(self) -> None:
        """Count one admitted request in flight (api/admission/admitted.py)."""
        self.num_in_flight += 1

    def leave(self) -> None:
        """The request counted by `enter` has released its slot (usage recorded)."""
        self.num_in_flight -= 1

    def begin(self, timeout_s: float) -> None:
        """Stop admitting; requests in flight are cut off `timeout_s` from now (or earlier)."""
        now = asyncio.get_running_loop().time()
        if self._began_at is None:
            self._began_at = now
        at = now + timeout_s
        self._cutoff_at = at if self._cutoff_at is None else min(self._cutoff_at, at)
        for timeout in self._running:
            if not timeout.expired():
                timeout.reschedule(self._cutoff_at)

    def cut_off_now(self) -> None:
        """Stop admitting and cut off every request in flight now (the second signal)."""
        self.begin(0.0)

    @contextlib.asynccontextmanager
    async def cutoff(self) -> AsyncIterator[None]:
        """Run the body until the cut-off; then cancel it and raise `ShutdownCutoffError`."""
        scope = asyncio.timeout_at(self._cutoff_at)
        try:
            async with scope:
                self._running.add(scope)
                try:
                    yield
                finally:
                    self._running.discard(scope)
        except TimeoutError:
            if scope.expired():
                raise ShutdownCutoffError(self._waited_s()) from None
            raise

    async def guard(self, items: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
        """The items of `items`; at the cut-off, `items` is cancelled and this raises 503."""
        try:
            while True:
                try:
                    async with self.cutoff():
                        item = await anext(items)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await close_iterator(items)

    def _waited_s(self) -> float:
        if self._began_at is None or self._cutoff_at is None:
            return 0.0
        return round(max(0.0, self._cutoff_at - self._began_at), 1)

"""`limits.request_timeout_s`: the time a generation request may run once admitted.

Only awaits on the generation run under the deadline, never a `yield` to the client: cancelling
a generator while it is suspended at a `yield` would hit whoever is sending its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from llmserve.errors import RequestTimeoutError

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """When a request must be done, on the event loop's clock."""

    timeout_s: float
    at: float

    @classmethod
    def after(cls, timeout_s: float) -> Deadline:
        """The deadline `timeout_s` from now."""
        return cls(timeout_s, asyncio.get_running_loop().time() + timeout_s)

    @contextlib.asynccontextmanager
    async def enforce(self) -> AsyncIterator[None]:
        """Cancel the body at the deadline and raise `RequestTimeoutError` (504) instead."""
        scope = asyncio.timeout_at(self.at)
        try:
            async with scope:
                yield
        except TimeoutError:
            if scope.expired():
                raise RequestTimeoutError(self.timeout_s) from None
            raise

    async def iterate(self, items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """The items of `items`; at the deadline, `items` is cancelled and this raises 504.

        A cancelled async generator runs its `finally` blocks, which abort its backend requests.
        """
        while True:
            try:
                async with self.enforce():
                    item = await anext(items)
            except StopAsyncIteration:
                return
            yield item

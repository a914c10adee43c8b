"""A waiting queue that is fair across tenants: priority class first, then round-robin by tenant.

Used by the engine's scheduler and by the fake backend, so that API tests and the real engine
share one admission policy. A tenant that queued 200 items delays another tenant's single item by
at most one round (one item of each tenant ahead of it in the rotation).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Items ordered by priority (lower first), round-robin across tenants, FIFO within one."""

    def __init__(self) -> None:
        # priority -> tenant -> items; the OrderedDict's order is the rotation.
        self._priority_to_tenants: dict[int, OrderedDict[str, deque[T]]] = {}
        self._num_items = 0

    def __len__(self) -> int:
        return self._num_items

    def __bool__(self) -> bool:
        return self._num_items > 0

    def __iter__(self) -> Iterator[T]:
        """Items in the order `pop` would return them if nothing else were pushed."""
        snapshot = {
            priority: OrderedDict((t, deque(items)) for t, items in tenants.items())
            for priority, tenants in self._priority_to_tenants.items()
        }
        for priority in sorted(snapshot):
            tenants = snapshot[priority]
            while tenants:
                tenant, items = next(iter(tenants.items()))
                yield items.popleft()
                tenants.move_to_end(tenant)
                if not items:
                    del tenants[tenant]

    def push(self, item: T, *, tenant: str = "", priority: int = 0) -> None:
        """Append `item` to its tenant's queue; a new tenant joins the end of the rotation."""
        tenants = self._priority_to_tenants.setdefault(priority, OrderedDict())
        tenants.setdefault(tenant, deque()).append(item)
        self._num_items += 1

    def push_front(self, item: T, *, tenant: str = "", priority: int = 0) -> None:
        """Put `item` next in line (a preempted request resumes before anything else)."""
        tenants = self._priority_to_tenants.setdefault(priority, OrderedDict())
        tenants.setdefault(tenant, deque()).appendleft(item)
        tenants.move_to_end(tenant, last=False)
        self._num_items += 1

    def peek(self) -> T | None:
        """The item `pop` would return, or None when empty."""
        for priority in sorted(self._priority_to_tenants):
            tenants = self._priority_to_tenants[priority]
            if tenants:
                return next(iter(tenants.values()))[0]
        return None

    def pop(self) -> T:
        """Remove and return the next item; its tenant moves to the end of the rotation."""
        for priority in sorted(self._priority_to_tenants):
            tenants = self._priority_to_tenants[priority]
            if not tenants:
                continue
            tenant, items = next(iter(tenants.items()))
            item = items.popleft()
            tenants.move_to_end(tenant)
            if not items:
                del tenants[tenant]
            self._num_items -= 1
            return item
        raise IndexError("pop from an empty FairQueue")

    def remove(self, item: T) -> bool:
        """Remove `item` wherever it waits; False if it is not queued."""
        for tenants in self._priority_to_tenants.values():
            for tenant, items in tenants.items():
                if item in items:
                    items.remove(item)
                    if not items:
                        del tenants[tenant]
                    self._num_items -= 1
                    return True
        return False

    def count_by_tenant(self) -> dict[str, int]:
        """How many items each tenant has waiting, over all priorities."""
        counts: dict[str, int] = {}
        for tenants in self._priority_to_tenants.values():
            for tenant, items in tenants.items():
                counts[tenant] = counts.get(tenant, 0) + len(items)
        return counts

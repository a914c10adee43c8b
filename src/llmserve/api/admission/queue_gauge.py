"""The bound on each model's waiting queue (`limits.max_queue`), exact under a burst.

A request passes admission a few awaits before it reaches its backend's queue, so the backend's
own waiting count misses a burst still in transit. The gauge counts, per model, the requests
admitted by the API layer and not yet finished; those beyond what the backend runs at once are
waiting, or about to. The check and the count happen with no `await` between them, and the count
drops exactly once, when the request's slot is released (end, error, disconnect or timeout).
"""

from __future__ import annotations

import dataclasses

from llmserve.errors import OverloadedError
from llmserve.types import BackendLoad


def projected_load(load: BackendLoad, num_admitted: int) -> BackendLoad:
    """`load` once the `num_admitted` requests in flight have all reached the backend.

    The backend runs up to `load.max_running` of them (when it does not say, only those running
    now); the rest wait. NOTE: one API request counts as one backend request here; the backend's
    own waiting count is the floor.
    """
    capacity = load.num_running
    if load.max_running is not None:
        capacity = max(capacity, load.max_running)
    num_waiting = max(load.num_waiting, num_admitted - capacity)
    return dataclasses.replace(load, num_waiting=num_waiting)


def check_queue(load: BackendLoad, max_queue: int) -> None:
    """Raise 503 server_is_overloaded when the backend's waiting queue is full.

    `max_queue` 0 refuses any request that would join a non-empty queue.
    """
    if load.num_waiting >= max(1, max_queue):
        raise OverloadedError(
            f"The server is overloaded: {load.num_waiting} requests are waiting "
            f"(the limit is {max_queue}). Please retry shortly.",
            retry_after_s=1.0,
        )


class QueueGauge:
    """Requests admitted and not yet finished, per model."""

    def __init__(self) -> None:
        self._num_admitted: dict[str, int] = {}

    def num_admitted(self, model: str) -> int:
        """Requests for `model` admitted and not yet released."""
        return self._num_admitted.get(model, 0)

    def admit(self, model: str, load: BackendLoad, max_queue: int) -> QueueTicket:
        """Count one request in; 503 server_is_overloaded when the queue would overflow."""
        num_admitted = self.num_admitted(model)
        check_queue(projected_load(load, num_admitted), max_queue)
        self._num_admitted[model] = num_admitted + 1
        return QueueTicket(self, model)

    def _leave(self, model: str) -> None:
        remaining = self._num_admitted[model] - 1
        if remaining:
            self._num_admitted[model] = remaining
        else:
            del self._num_admitted[model]


class QueueTicket:
    """One admitted request's place in the gauge."""

    def __init__(self, gauge: QueueGauge, model: str) -> None:
        self._gauge = gauge
        self._model = model
        self._has_left = False

    def leave(self) -> None:
        """Take the request out of the gauge. Idempotent: a second call does nothing."""
        if not self._has_left:
            self._has_left = True
            self._gauge._leave(self._model)

"""`AdmittedSlot`: one admitted request, owning all it holds until its release.

It holds the key's slot (the gatekeeper's), the request's place in its model's queue gauge, the
key's figures in /metrics and the drain's count of requests in flight. `acquire_slot`
(api/admission/) makes one once every admission check passed; routes and `api/http/sse.py` release
it in `finally`. The order of release is written out in `release`.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import State

from llmserve.api.admission.drain import Drain
from llmserve.api.admission.queue_gauge import QueueTicket
from llmserve.auth.base import Slot, UsageRecord
from llmserve.metrics import ServerMetrics
from llmserve.serving.routing import variant_usage


class AdmittedSlot:
    """The slot, queue ticket, per-key metrics and drain count of one admitted request."""

    def __init__(
        self, slot: Slot, ticket: QueueTicket, metrics: ServerMetrics, drain: Drain, *,
        key_id: str, model: str, variant: str | None, notes: State,
    ) -> None:  # fmt: skip
        self._slot = slot
        self._ticket = ticket
        self._drain = drain
        self._variant = variant  # usage is recorded under MODEL@VARIANT (serving/routing.py)
        self._notes = notes  # the request log reads the usage from here
        label = metrics.key_label(key_id)
        self._in_flight = metrics.key_in_flight.labels(label, model)
        self._tokens = metrics.key_tokens
        self._labels = (label, model)
        self._is_released = False
        self._in_flight.inc()
        drain.enter()

    @property
    def headers(self) -> Mapping[str, str]:
        """The gatekeeper's rate-limit headers."""
        return self._slot.headers

    def report(self, usage: UsageRecord) -> None:
        """The usage so far, stored incrementally by the gatekeeper's slot."""
        self._slot.report(variant_usage(usage, self._variant))

    async def release(self, usage: UsageRecord) -> None:
        """Release, in this order (steps 1, 2 and 4 once; a second call repeats only step 3):

        1. the key's figures: in-flight gauge down, tokens counted, usage noted for the log;
        2. the model's queue gauge: the request leaves it at once, even if cancelled later;
        3. the gatekeeper's slot: released, recording the usage;
        4. the drain's in-flight count, last and even if step 3 failed or was cancelled, so that a
           drain waits until the usage is recorded.
        """
        is_first = not self._is_released
        self._is_released = True
        try:
            if is_first:
                self._count(usage)
            self._ticket.leave()
            await self._slot.release(variant_usage(usage, self._variant))
        finally:
            if is_first:
                self._drain.leave()

    def _count(self, usage: UsageRecord) -> None:
        self._in_flight.dec()
        self._tokens.labels(*self._labels, "prompt").inc(usage.prompt_tokens)
        self._tokens.labels(*self._labels, "completion").inc(usage.completion_tokens)
        self._notes.usage = usage

"""`AdmittedSlot` releases in its written order: key figures, queue gauge, gatekeeper (usage
recorded under MODEL@VARIANT), drain count last; a second release repeats only the gatekeeper's."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import State

from llmserve.api.admission.admitted import AdmittedSlot
from llmserve.api.admission.drain import Drain
from llmserve.api.admission.queue_gauge import QueueGauge
from llmserve.auth.base import UsageRecord
from llmserve.backends.fake import FakeBackend
from llmserve.config import MetricsConfig
from llmserve.metrics import ServerMetrics
from llmserve.types import BackendLoad

MODEL = "chat"


class RecordingSlot:
    """A gatekeeper slot that notes, at each release, what the other parts looked like."""

    def __init__(self, gauge: QueueGauge, drain: Drain, metrics: ServerMetrics) -> None:
        self.gauge, self.drain, self.metrics = gauge, drain, metrics
        self.releases: list[tuple[str, int, int, float]] = []

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    def report(self, usage: UsageRecord) -> None:
        pass

    async def release(self, usage: UsageRecord) -> None:
        in_flight = key_in_flight(self.metrics)
        self.releases.append(
            (usage.model, self.gauge.num_admitted(MODEL), self.drain.num_in_flight, in_flight)
        )


def key_in_flight(metrics: ServerMetrics) -> float | None:
    return metrics.registry.get_sample_value(
        "llmserve:api_key_requests_in_flight", {"key_id": "k1", "model_name": MODEL}
    )


async def test_release_order_is_figures_queue_gatekeeper_then_drain() -> None:
    metrics = ServerMetrics(MetricsConfig(), {MODEL: FakeBackend(MODEL)})
    gauge, drain = QueueGauge(), Drain()
    ticket = gauge.admit(MODEL, BackendLoad(0, 0), max_queue=8)
    gatekeeper_slot = RecordingSlot(gauge, drain, metrics)
    slot = AdmittedSlot(
        gatekeeper_slot, ticket, metrics, drain, key_id="k1", model=MODEL, variant="v2",
        notes=State(),
    )  # fmt: skip
    assert (gauge.num_admitted(MODEL), drain.num_in_flight, key_in_flight(metrics)) == (1, 1, 1)
    await slot.release(UsageRecord(MODEL, prompt_tokens=3, completion_tokens=4))
    # at the gatekeeper's release: key figures done, queue left, drain still counting it
    assert gatekeeper_slot.releases == [(f"{MODEL}@v2", 0, 1, 0)]
    assert drain.num_in_flight == 0
    await slot.release(UsageRecord(MODEL))
    assert len(gatekeeper_slot.releases) == 2
    assert (gauge.num_admitted(MODEL), drain.num_in_flight) == (0, 0)

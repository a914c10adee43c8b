"""Prometheus families: vLLM's names, labels and buckets under `llmserve:`, plus per-key and jobs.

vLLM's Grafana dashboards work after renaming the `vllm:` prefix to `llmserve:`. Each app owns
its `ServerMetrics` and registry (never the process-wide default registry): tests build many apps.

- Request figures (TTFT, inter-token latency, end-to-end, queue time, tokens, finish reasons) are
  observed where outputs stream (api/http/request_metrics.py).
- Engine figures (running, waiting, KV-cache usage, preemptions) are read from each backend's
  `load()` snapshot when /metrics is scraped, so they cost nothing between scrapes.
- Per-key families carry the key's public id, never its secret; `metrics.per_key: false` folds
  every key into `key_id="all"` to bound cardinality.
- Job families (batches by status, lines done) are read from the job store at each scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmserve.config import MetricsConfig
from llmserve.statuses import BATCH_STATUSES, LINE_OUTCOMES, BatchStatus, LineOutcome
from llmserve.types import BackendLoad

PREFIX = "llmserve:"
# vLLM's buckets (vllm/v1/metrics/loggers.py), so its dashboards and alerts carry over.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
INTER_TOKEN_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort")
ALL_KEYS = "all"  # the key_id label when per-key labels are off
MODEL = ["model_name"]
PER_KEY = ["key_id", "model_name"]
PREFIX_CACHE = ["model_name", "namespace"]  # namespace: key, group, salt or anonymous
NAMESPACE_KINDS = ("key", "group", "salt", "anonymous")


class LoadSource(Protocol):
    """Anything with a load snapshot: every `Backend`."""

    def load(self) -> BackendLoad: ...


class EngineCollector(Collector):
    """Running, waiting, KV-cache usage and preemptions per model, read at scrape time."""

    def __init__(self, backends: Mapping[str, LoadSource]) -> None:
        self._backends = backends

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        running, waiting, kv_usage, preemptions = families
        for name, backend in self._backends.items():
            load = backend.load()
            running.add_metric([name], load.num_running)
            waiting.add_metric([name], load.num_waiting)
            kv_usage.add_metric([name], load.kv_cache_usage)
            preemptions.add_metric([name], load.num_preemptions)
        return families

    def _families(
        self,
    ) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                f"{PREFIX}num_requests_running",
                "Number of requests in model execution batches.",
                labels=MODEL,
            ),
            GaugeMetricFamily(
                f"{PREFIX}num_requests_waiting",
                "Number of requests waiting to be processed.",
                labels=MODEL,
            ),
            GaugeMetricFamily(
                f"{PREFIX}kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                labels=MODEL,
            ),
            CounterMetricFamily(
                f"{PREFIX}num_preemptions",
                "Cumulative number of preemption from the engine.",
                labels=MODEL,
            ),
        )


class ServerMetrics:
    """Every family of one app, on its own registry."""

    def __init__(self, config: MetricsConfig, backends: Mapping[str, LoadSource]) -> None:
        self.config = config
        self.models = frozenset(backends)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EngineCollector(backends))
        self._add_request_families()
        self._add_key_families()
        self._add_job_families()
        for model in backends:
            self._start_at_zero(model)

    def exposition(self) -> bytes:
        """The Prometheus text format of every family."""
        return generate_latest(self.registry)

    def key_label(self, key_id: str) -> str:
        """The `key_id` label value: the key's public id, or "all" when per-key labels are off."""
        return key_id if self.config.per_key else ALL_KEYS

    def model_label(self, model: str | None) -> str:
        """The `model_name` label of a request: a served model, else "unknown" (bounded)."""
        return model if model in self.models else "unknown"

    def _add_request_families(self) -> None:
        registry = self.registry
        self.time_to_first_token = Histogram(
            f"{PREFIX}time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            MODEL, buckets=TTFT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.inter_token_latency = Histogram(
            f"{PREFIX}inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            MODEL, buckets=INTER_TOKEN_BUCKETS, registry=registry,
        )  # fmt: skip
        self.e2e_request_latency = Histogram(
            f"{PREFIX}e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            MODEL, buckets=REQUEST_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.request_queue_time = Histogram(
            f"{PREFIX}request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            MODEL, buckets=REQUEST_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            f"{PREFIX}prompt_tokens", "Number of prefill tokens processed.", MODEL,
            registry=registry,
        )  # fmt: skip
        self.generation_tokens = Counter(
            f"{PREFIX}generation_tokens", "Number of generation tokens processed.", MODEL,
            registry=registry,
        )  # fmt: skip
        self.request_success = Counter(
            f"{PREFIX}request_success", "Count of successfully processed requests.",
            [*MODEL, "finished_reason"], registry=registry,
        )  # fmt: skip
        self._add_prefix_cache_families()

    def _add_prefix_cache_families(self) -> None:
        """vLLM's prefix-cache counters, per model and cache namespace kind (never a prompt)."""
        self.prefix_cache_queries = Counter(
            f"{PREFIX}prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            PREFIX_CACHE, registry=self.registry,
        )  # fmt: skip
        self.replica_requests = Counter(
            f"{PREFIX}engine_replica_requests",
            "Requests each engine replica ran (Ray runtime; replica: Serve's replica id).",
            ["model_name", "replica"], registry=self.registry,
        )  # fmt: skip
        self.prefix_cache_hits = Counter(
            f"{PREFIX}prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            PREFIX_CACHE, registry=self.registry,
        )  # fmt: skip

    def _add_key_families(self) -> None:
        registry = self.registry
        self.key_requests = Counter(
            f"{PREFIX}api_key_requests", "Requests per API key by HTTP status.",
            [*PER_KEY, "status"], registry=registry,
        )  # fmt: skip
        self.key_tokens = Counter(
            f"{PREFIX}api_key_tokens", "Tokens per API key by type (prompt, completion).",
            [*PER_KEY, "type"], registry=registry,
        )  # fmt: skip
        self.key_rejections = Counter(
            f"{PREFIX}api_key_rejections",
            "Requests refused per API key by reason (rate_limited 429; overloaded, draining 503).",
            [*PER_KEY, "reason"], registry=registry,
        )  # fmt: skip
        self.key_in_flight = Gauge(
            f"{PREFIX}api_key_requests_in_flight", "Requests in flight per API key.",
            PER_KEY, registry=registry,
        )  # fmt: skip

    def _add_job_families(self) -> None:
        self.batches = Gauge(
            f"{PREFIX}batches", "Batch jobs by status.", ["status"], registry=self.registry
        )
        self.batch_lines = Counter(
            f"{PREFIX}batch_lines", "Batch lines done, by outcome.", ["status"],
            registry=self.registry,
        )  # fmt: skip
        for status in BATCH_STATUSES:
            self.batches.labels(status).set(0)
        for status in LINE_OUTCOMES:
            self.batch_lines.labels(status)
        self._num_lines_seen = dict.fromkeys(LINE_OUTCOMES, 0)

    def observe_jobs(
        self, batches_by_status: Mapping[BatchStatus, int], lines: Mapping[LineOutcome, int]
    ) -> None:
        """Set the job families from the job store's totals (read when /metrics is scraped)."""
        for status in BATCH_STATUSES:
            self.batches.labels(status).set(batches_by_status.get(status, 0))
        for status in LINE_OUTCOMES:
            # NOTE: the store holds the running total; the counter only ever moves forward.
            total = lines.get(status, 0)
            self.batch_lines.labels(status).inc(max(0, total - self._num_lines_seen[status]))
            self._num_lines_seen[status] = max(total, self._num_lines_seen[status])

    def _start_at_zero(self, model: str) -> None:
        """Series a dashboard reads exist from the start, not from the first request."""
        self.prompt_tokens.labels(model)
        self.generation_tokens.labels(model)
        for reason in FINISHED_REASONS:
            self.request_success.labels(model, reason)
        for kind in NAMESPACE_KINDS:
            self.prefix_cache_queries.labels(model, kind)
            self.prefix_cache_hits.labels(model, kind)

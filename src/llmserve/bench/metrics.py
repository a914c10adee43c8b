"""The run's figures, with `vllm bench serve`'s definitions.

TPOT of a request is `(latency - ttft) / (output_tokens - 1)` (requests of one token have none);
ITL pools every gap between token chunks of every request. Goodput counts the requests that meet
every SLO given (`ttft`, `tpot`, `e2el` in ms; a one-token request's TPOT counts as 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmserve.bench.request import RequestOutput

METRICS = ("ttft", "tpot", "itl", "e2el")
SLO_METRICS = ("ttft", "tpot", "e2el")


@dataclass(frozen=True)
class Distribution:
    """Mean, median, standard deviation and chosen percentiles of one metric, in ms."""

    mean: float
    median: float
    std: float
    percentiles: tuple[tuple[float, float], ...]

    @classmethod
    def of(cls, seconds: Sequence[float], percentiles: Sequence[float]) -> Distribution:
        """The distribution of `seconds` (0 everywhere when empty, as vLLM reports it)."""
        ms = np.asarray(seconds if len(seconds) else [0.0], dtype=float) * 1000
        return cls(
            float(ms.mean()),
            float(np.median(ms)),
            float(ms.std()),
            tuple((p, float(np.percentile(ms, p))) for p in percentiles),
        )


@dataclass(frozen=True)
class BenchmarkMetrics:
    """Everything the report prints."""

    completed: int
    failed: int
    total_input: int
    total_output: int
    duration: float
    num_good: int
    max_output_tokens_per_s: float
    max_concurrent_requests: int
    distributions: dict[str, Distribution]

    @property
    def request_throughput(self) -> float:
        return self.completed / self.duration

    @property
    def request_goodput(self) -> float:
        return self.num_good / self.duration

    @property
    def output_throughput(self) -> float:
        return self.total_output / self.duration

    @property
    def total_token_throughput(self) -> float:
        return (self.total_input + self.total_output) / self.duration


def tpot(output: RequestOutput) -> float | None:
    """Time per output token after the first; None for a request of one token."""
    if output.output_tokens <= 1:
        return None
    return (output.latency - output.ttft) / (output.output_tokens - 1)


def request_samples(outputs: Sequence[RequestOutput]) -> dict[str, list[float]]:
    """Per-metric samples (seconds) of the successful requests."""
    done = [o for o in outputs if o.success]
    return {
        "ttft": [o.ttft for o in done],
        "tpot": [t for o in done if (t := tpot(o)) is not None],
        "itl": [gap for o in done for gap in o.itl],
        "e2el": [o.latency for o in done],
    }


def count_good(outputs: Sequence[RequestOutput], slos_ms: dict[str, float]) -> int:
    """Successful requests within every SLO."""

    def meets(output: RequestOutput) -> bool:
        values = {"ttft": output.ttft, "tpot": tpot(output) or 0.0, "e2el": output.latency}
        return all(values[name] * 1000 <= limit for name, limit in slos_ms.items())

    return sum(1 for o in outputs if o.success and meets(o)) if slos_ms else 0


def peaks(outputs: Sequence[RequestOutput]) -> tuple[float, int]:
    """The most output tokens in one second of the run, and the most requests in flight."""
    done = [o for o in outputs if o.success]
    if not done:
        return 0.0, 0
    start = min(o.start_time for o in done)
    seconds = [int(t - start) for o in done for t in o.token_times]
    per_second = np.bincount(seconds) if seconds else np.zeros(1)
    events = sorted(
        [(o.start_time, 1) for o in done] + [(o.start_time + o.latency, -1) for o in done]
    )  # an end sorts before a start at the same instant: intervals are half-open
    in_flight = np.cumsum([delta for _, delta in events])
    return float(per_second.max()), int(in_flight.max())


def calculate_metrics(
    outputs: Sequence[RequestOutput],
    duration: float,
    percentiles: Sequence[float],
    slos_ms: dict[str, float],
) -> BenchmarkMetrics:
    """The run's metrics from every request's output."""
    done = [o for o in outputs if o.success]
    samples = request_samples(outputs)
    max_tokens_per_s, max_in_flight = peaks(outputs)
    return BenchmarkMetrics(
        completed=len(done),
        failed=len(outputs) - len(done),
        total_input=sum(o.prompt_len for o in done),
        total_output=sum(o.output_tokens for o in done),
        duration=duration,
        num_good=count_good(outputs, slos_ms),
        max_output_tokens_per_s=max_tokens_per_s,
        max_concurrent_requests=max_in_flight,
        distributions={m: Distribution.of(samples[m], percentiles) for m in METRICS},
    )

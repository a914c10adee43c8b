"""The bench's definitions on known numbers: arrivals, TPOT, goodput, URLs."""

from __future__ import annotations

import numpy as np
import pytest

from llmserve.bench.arrivals import arrival_offsets
from llmserve.bench.dataset import sample_lengths
from llmserve.bench.metrics import calculate_metrics
from llmserve.bench.request import RequestOutput
from llmserve.remote import server_root


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_gaps_have_the_rate_and_the_burstiness_asked(burstiness: float) -> None:
    offsets = arrival_offsets(4000, 20.0, burstiness, np.random.default_rng(0))
    gaps = np.diff([0.0, *offsets])
    assert offsets[-1] == pytest.approx(4000 / 20.0)  # scaled to the exact mean rate
    # a gamma distribution of shape k has a coefficient of variation of 1 / sqrt(k)
    assert gaps.std() / gaps.mean() == pytest.approx(burstiness**-0.5, rel=0.1)


def test_infinite_rate_sends_everything_at_once() -> None:
    assert arrival_offsets(3, float("inf"), 1.0, np.random.default_rng(0)) == [0.0, 0.0, 0.0]


def test_lengths_stay_in_the_range_ratio() -> None:
    lengths = sample_lengths(100, 0.25, 2000, np.random.default_rng(0))
    assert min(lengths) == 75 and max(lengths) == 125


def output(ttft: float, latency: float, tokens: int, start: float = 0.0) -> RequestOutput:
    gaps = [(latency - ttft) / (tokens - 1)] * (tokens - 1) if tokens > 1 else []
    times = list(start + ttft + np.cumsum([0.0, *gaps]))
    return RequestOutput(
        prompt_len=10,
        success=True,
        start_time=start,
        ttft=ttft,
        itl=gaps,
        latency=latency,
        output_tokens=tokens,
        token_times=times,
    )


def test_tpot_excludes_the_first_token_and_goodput_counts_slos() -> None:
    outputs = [output(0.1, 1.0, 10), output(0.5, 0.5, 1, start=0.2), RequestOutput(prompt_len=10)]
    metrics = calculate_metrics(outputs, duration=2.0, percentiles=[50], slos_ms={"ttft": 200})
    assert (metrics.completed, metrics.failed) == (2, 1)
    assert metrics.distributions["tpot"].mean == pytest.approx(100.0)  # 900 ms / 9 tokens
    assert metrics.distributions["itl"].mean == pytest.approx(100.0)
    assert metrics.num_good == 1  # only the first meets TTFT <= 200 ms
    assert metrics.total_output == 11 and metrics.output_throughput == 5.5
    assert metrics.max_concurrent_requests == 2


@pytest.mark.parametrize(
    "url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/", "h:8000/v1"]
)
def test_base_url_may_be_the_root_or_v1(url: str) -> None:
    assert server_root(url) == "http://h:8000"

"""`--plot FILE.png`: latency CDFs and throughput over time (matplotlib, `llmserve[plot]`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmserve.bench.metrics import request_samples
from llmserve.bench.request import RequestOutput

LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2el": "E2E latency"}


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'llmserve[plot]'"
        ) from None
    return plt


def _cdfs(axes: Any, outputs: Sequence[RequestOutput]) -> None:
    for metric, seconds in request_samples(outputs).items():
        if seconds:
            ms = np.sort(np.asarray(seconds)) * 1000
            axes.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=LABELS[metric])
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of samples")
    axes.set_title("Latency CDFs")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()


def _throughput(axes: Any, outputs: Sequence[RequestOutput]) -> None:
    done = [o for o in outputs if o.success]
    start = min(o.start_time for o in done)
    end = max(o.start_time + o.latency for o in done)
    edges = np.arange(0.0, end - start + 1.0, 1.0)
    tokens = np.histogram([t - start for o in done for t in o.token_times], bins=edges)[0]
    in_flight = [
        sum(o.start_time - start <= s < o.start_time - start + o.latency for o in done)
        for s in edges[:-1]
    ]
    axes.step(edges[:-1], tokens, where="post", label="output tokens/s")
    axes.set_xlabel("time since the first request (s)")
    axes.set_ylabel("output tokens per second")
    axes.set_title("Throughput over time")
    twin = axes.twinx()
    twin.stairs(in_flight, edges, color="tab:orange", label="requests in flight")
    twin.set_ylabel("requests in flight")
    axes.legend(loc="upper left")
    twin.legend(loc="upper right")


def save_plot(outputs: Sequence[RequestOutput], path: Path, title: str) -> None:
    """A PNG with the latency CDFs (left) and output tokens/s and requests in flight (right)."""
    plt = _pyplot()
    if not any(o.success for o in outputs):
        raise PlotUnavailableError("no request succeeded: nothing to plot")
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    _cdfs(left, outputs)
    _throughput(right, outputs)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

"""The "Serving Benchmark Result" block and the result JSON, laid out as `vllm bench serve`'s."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from llmserve.bench.metrics import BenchmarkMetrics
from llmserve.bench.request import RequestOutput

WIDTH = 50
HEADERS = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
}
DETAILED_FIELDS = frozenset(
    ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors")
)


@dataclass(frozen=True)
class RunSettings:
    """What the run was asked to do, as the report and the JSON name it."""

    backend: str
    label: str | None
    model: str
    num_prompts: int
    request_rate: float
    burstiness: float
    max_concurrency: int | None
    percentile_metrics: tuple[str, ...]
    has_goodput: bool


def _line(name: str, value: object) -> str:
    text = f"{value:<10.2f}" if isinstance(value, float) else f"{value!s:<10}"
    return f"{name:<40} {text}"


def percentile_name(p: float) -> str:
    """ "99" for 99.0, "99.9" for 99.9: the key vLLM uses (p99_ttft_ms)."""
    return str(int(p)) if int(p) == p else str(p)


def summary_lines(settings: RunSettings, metrics: BenchmarkMetrics) -> list[str]:
    """The block's head: counts, duration and throughputs."""
    lines = [" Serving Benchmark Result ".center(WIDTH, "=")]
    lines += [_line("Successful requests:", metrics.completed)]
    lines += [_line("Failed requests:", metrics.failed)]
    if settings.max_concurrency is not None:
        lines += [_line("Maximum request concurrency:", settings.max_concurrency)]
    if not math.isinf(settings.request_rate):
        lines += [_line("Request rate configured (RPS):", settings.request_rate)]
    lines += [
        _line("Benchmark duration (s):", metrics.duration),
        _line("Total input tokens:", metrics.total_input),
        _line("Total generated tokens:", metrics.total_output),
        _line("Request throughput (req/s):", metrics.request_throughput),
    ]
    if settings.has_goodput:
        lines += [_line("Request goodput (req/s):", metrics.request_goodput)]
    return [
        *lines,
        _line("Output token throughput (tok/s):", metrics.output_throughput),
        _line("Peak output token throughput (tok/s):", metrics.max_output_tokens_per_s),
        _line("Peak concurrent requests:", float(metrics.max_concurrent_requests)),
        _line("Total token throughput (tok/s):", metrics.total_token_throughput),
    ]


def result_block(settings: RunSettings, metrics: BenchmarkMetrics) -> str:
    """The whole printed block."""
    lines = summary_lines(settings, metrics)
    for metric in settings.percentile_metrics:
        short, header = HEADERS[metric]
        dist = metrics.distributions[metric]
        lines += [header.center(WIDTH, "-")]
        lines += [_line(f"Mean {short} (ms):", dist.mean)]
        lines += [_line(f"Median {short} (ms):", dist.median)]
        for p, value in dist.percentiles:
            lines += [_line(f"P{percentile_name(p)} {short} (ms):", value)]
    return "\n".join([*lines, "=" * WIDTH])


def result_json(
    settings: RunSettings, metrics: BenchmarkMetrics, outputs: Sequence[RequestOutput]
) -> dict[str, Any]:
    """The saved result: settings, figures and per-request lists (vLLM's field names)."""
    result: dict[str, Any] = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": settings.backend,
        "backend": settings.backend,
        "label": settings.label,
        "model_id": settings.model,
        "num_prompts": settings.num_prompts,
        "request_rate": "inf" if math.isinf(settings.request_rate) else settings.request_rate,
        "burstiness": settings.burstiness,
        "max_concurrency": settings.max_concurrency,
        "duration": metrics.duration,
        "completed": metrics.completed,
        "failed": metrics.failed,
        "total_input_tokens": metrics.total_input,
        "total_output_tokens": metrics.total_output,
        "request_throughput": metrics.request_throughput,
        "request_goodput": metrics.request_goodput if settings.has_goodput else None,
        "output_throughput": metrics.output_throughput,
        "total_token_throughput": metrics.total_token_throughput,
        "max_output_tokens_per_s": metrics.max_output_tokens_per_s,
        "max_concurrent_requests": metrics.max_concurrent_requests,
    }
    result.update(per_request_lists(outputs))
    for metric in settings.percentile_metrics:
        dist = metrics.distributions[metric]
        result[f"mean_{metric}_ms"] = dist.mean
        result[f"median_{metric}_ms"] = dist.median
        result[f"std_{metric}_ms"] = dist.std
        for p, value in dist.percentiles:
            result[f"p{percentile_name(p)}_{metric}_ms"] = value
    return result


def per_request_lists(outputs: Sequence[RequestOutput]) -> dict[str, list[Any]]:
    """One list per field, in request order (start times on the client's perf_counter clock)."""
    return {
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": [o.output_tokens if o.success else 0 for o in outputs],
        "ttfts": [o.ttft for o in outputs],
        "itls": [o.itl for o in outputs],
        "latencies": [o.latency for o in outputs],
        "start_times": [o.start_time for o in outputs],
        "queue_times": [o.queue_time for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
        "errors": [o.error for o in outputs],
    }


def result_path(
    settings: RunSettings, date: str, filename: str | None, result_dir: str | None
) -> Path:
    """`--result-filename`, else `{label}-{rate}qps[-concurrencyN]-{model}-{date}.json`, in
    `--result-dir` (created) or the current directory."""
    if filename is None:
        concurrency = f"-concurrency{settings.max_concurrency}" if settings.max_concurrency else ""
        model = settings.model.split("/")[-1]
        label = settings.label or settings.backend
        filename = f"{label}-{settings.request_rate}qps{concurrency}-{model}-{date}.json"
    folder = Path(result_dir) if result_dir else Path()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / filename


def save_result(result: dict[str, Any], path: Path, *, detailed: bool) -> None:
    """Write the JSON; without `detailed` the long per-request lists are left out (as vLLM)."""
    kept = result if detailed else {k: v for k, v in result.items() if k not in DETAILED_FIELDS}
    path.write_text(json.dumps(kept), encoding="utf-8")

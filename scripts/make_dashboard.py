"""Write docs/grafana/llmserve-dashboard.json: a Grafana dashboard over llmserve's /metrics.

    python scripts/make_dashboard.py            # rewrite the JSON
    python scripts/make_dashboard.py --check    # exit 1 if the JSON differs from what this makes

Import it in Grafana (Dashboards > New > Import) and pick a Prometheus data source that scrapes
llmserve's GET /metrics. The latency and engine panels use vLLM's metric names under the
`llmserve:` prefix; tests/test_dashboard.py checks every expression against a real scrape.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "llmserve-dashboard.json"
MODEL = 'model_name=~"$model_name"'
RATE = "[$__rate_interval]"
WIDTH, HEIGHT = 12, 8  # Grafana's grid is 24 units wide


def quantiles(metric: str, *qs: float) -> list[dict[str, str]]:
    """p50/p90/p99-style targets of a histogram over the selected models."""
    buckets = f"sum by (le) (rate({metric}_bucket{{{MODEL}}}{RATE}))"
    return [target(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}") for q in qs]


def mean(metric: str) -> dict[str, str]:
    """The mean of a histogram over the selected models."""
    return target(f"{rate_of(metric + '_sum')} / {rate_of(metric + '_count')}", "mean")


def rate_of(metric: str, by: str = "") -> str:
    """The per-second rate of a counter over the selected models, summed (by `by`)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{MODEL}}}{RATE}))"


def sum_of(metric: str, by: str = "") -> str:
    """A gauge over the selected models, summed (by `by`)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({metric}{{{MODEL}}})"


def target(expr: str, legend: str) -> dict[str, str]:
    return {"expr": expr, "legendFormat": legend}


def panel(title: str, unit: str, targets: list[dict[str, str]], description: str) -> dict[str, Any]:
    """A time-series panel (ids and positions are set by `layout`)."""
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
    }


def histogram_panel(title: str, metric: str, description: str) -> dict[str, Any]:
    """p50, p90, p99 and the mean of a latency histogram."""
    return panel(title, "s", [*quantiles(metric, 0.5, 0.9, 0.99), mean(metric)], description)


def latency_panels() -> list[dict[str, Any]]:
    return [
        histogram_panel(
            "Time to first token",
            "llmserve:time_to_first_token_seconds",
            "From arrival at the server to the first generated token.",
        ),
        histogram_panel(
            "Inter-token latency",
            "llmserve:inter_token_latency_seconds",
            "Time between consecutive tokens of a choice.",
        ),
        histogram_panel(
            "End-to-end request latency",
            "llmserve:e2e_request_latency_seconds",
            "From arrival to the last output.",
        ),
        histogram_panel(
            "Queue time",
            "llmserve:request_queue_time_seconds",
            "Time a request waited in its backend before it first ran.",
        ),
    ]


def engine_panels() -> list[dict[str, Any]]:
    tokens = [
        target(rate_of("llmserve:prompt_tokens_total"), "prompt"),
        target(rate_of("llmserve:generation_tokens_total"), "generation"),
    ]
    scheduler = [
        target(sum_of("llmserve:num_requests_running"), "running"),
        target(sum_of("llmserve:num_requests_waiting"), "waiting"),
    ]
    kv_cache = [
        target(f"max by (model_name) (llmserve:kv_cache_usage_perc{{{MODEL}}})", "{{model_name}}")
    ]
    finished = [
        target(rate_of("llmserve:request_success_total", "finished_reason"), "{{finished_reason}}"),
        target(rate_of("llmserve:num_preemptions_total"), "preemptions"),
    ]
    return [
        panel("Token throughput", "short", tokens, "Prompt and generated tokens per second."),
        panel("Scheduler state", "short", scheduler, "Requests running, and waiting to run."),
        panel("KV-cache usage", "percentunit", kv_cache, "Fraction of KV-cache blocks in use."),
        panel(
            "Finished requests and preemptions",
            "reqps",
            finished,
            "Choices finished per second by reason (stop, length, abort), and preemptions.",
        ),
    ]


def key_panels() -> list[dict[str, Any]]:
    requests = rate_of("llmserve:api_key_requests_total", "key_id, status")
    tokens = rate_of("llmserve:api_key_tokens_total", "key_id, type")
    rejections = rate_of("llmserve:api_key_rejections_total", "key_id, reason")
    in_flight = sum_of("llmserve:api_key_requests_in_flight", "key_id")
    return [
        panel(
            "Requests per key by status",
            "reqps",
            [target(requests, "{{key_id}} {{status}}")],
            "HTTP answers per API key (its public id) and status code.",
        ),
        panel(
            "Tokens per key",
            "short",
            [target(tokens, "{{key_id}} {{type}}")],
            "Prompt and completion tokens per second per API key.",
        ),
        panel(
            "Rejections per key",
            "reqps",
            [target(rejections, "{{key_id}} {{reason}}")],
            "Refused requests: rate_limited (429), overloaded and draining (503).",
        ),
        panel(
            "In flight per key",
            "short",
            [target(in_flight, "{{key_id}}")],
            "Requests each API key has in flight.",
        ),
    ]


def job_panels() -> list[dict[str, Any]]:
    lines = "sum by (status) (rate(llmserve:batch_lines_total[$__rate_interval]))"
    return [
        panel(
            "Batches by status",
            "short",
            [target("sum by (status) (llmserve:batches)", "{{status}}")],
            "Batch jobs in each status.",
        ),
        panel(
            "Batch lines done",
            "short",
            [target(lines, "{{status}}")],
            "Batch lines finished per second, by outcome.",
        ),
    ]


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(sections: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows of two panels, numbered in order."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, members in sections:
        panels.append({**row(title), "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        for i, member in enumerate(members):
            x = (i % 2) * WIDTH
            panels.append({**member, "gridPos": {"h": HEIGHT, "w": WIDTH, "x": x, "y": y}})
            y += HEIGHT if i % 2 else 0
        y += HEIGHT if len(members) % 2 else 0
    return [{**p, "id": i + 1} for i, p in enumerate(panels)]


def templating() -> dict[str, Any]:
    datasource = {"type": "datasource", "name": "datasource", "query": "prometheus"}
    model = {
        "type": "query",
        "name": "model_name",
        "label": "model",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": "label_values(llmserve:num_requests_running, model_name)"},
        "includeAll": True,
        "multi": True,
        "refresh": 2,
    }
    return {"list": [datasource, model]}


def sections() -> list[tuple[str, list[dict[str, Any]]]]:
    """Every row of the dashboard with its panels."""
    return [
        ("Latency", latency_panels()),
        ("Engine", engine_panels()),
        ("API keys", key_panels()),
        ("Batch jobs", job_panels()),
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard."""
    return {
        "title": "llmserve",
        "uid": "llmserve",
        "description": "llmserve's /metrics: vLLM's latency and engine figures, per-key usage.",
        "tags": ["llmserve", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": templating(),
        "panels": layout(sections()),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python scripts/make_dashboard.py")
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

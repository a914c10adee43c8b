"""docs/grafana/llmserve-dashboard.json: made by scripts/make_dashboard.py, and every PromQL
expression in it names metrics and labels that a real server's /metrics exports."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

from .conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "llmserve-dashboard.json"
MODEL = "fake-model"
METRIC = re.compile(r"[a-zA-Z_]\w*:[\w:]*")  # every llmserve metric name has a colon
GROUPING = re.compile(r"\bby \(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def make_dashboard() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_dashboard", ROOT / "scripts/make_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and the model variable's query."""
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def labels_used(expr: str) -> set[str]:
    grouped = {name.strip() for names in GROUPING.findall(expr) for name in names.split(",")}
    return (
        grouped | set(MATCHER.findall(expr)) | set(re.findall(r"label_values\([^,]+, (\w+)", expr))
    )


async def scrape_after_traffic(serve: Any, home: Path) -> dict[str, set[str]]:
    """Sample names of a real server's /metrics after requests, with the labels each carries."""
    _, secret = open_key_store(home).create_key(KeySpec(name="dash", rpm=2))
    config = ServerConfig(models=(ModelConfig(MODEL, source="fake", backend="fake"),), home=home)
    server: LiveServer = serve(
        create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    )
    user = [{"role": "user", "content": "Hi"}]
    async with openai.AsyncOpenAI(
        base_url=server.base_url + "/v1", api_key=secret, max_retries=0
    ) as client:
        await client.chat.completions.create(model=MODEL, messages=user)
        stream = await client.chat.completions.create(model=MODEL, messages=user, stream=True)
        _ = [chunk async for chunk in stream]
        with pytest.raises(openai.RateLimitError):  # rpm=2: a rejection to count
            await client.chat.completions.create(model=MODEL, messages=user)
    text = httpx.get(server.base_url + "/metrics").text
    name_to_labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name_to_labels.setdefault(sample.name, set()).update(sample.labels)
    return name_to_labels


def test_dashboard_json_is_what_the_script_makes() -> None:
    assert DASHBOARD.read_text() == make_dashboard().render()


async def test_every_expression_uses_exported_metrics_and_labels(
    serve: Any, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    name_to_labels = await scrape_after_traffic(serve, tmp_path)
    exprs = expressions(dashboard)
    assert len(exprs) > 20
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, expr
        assert names <= name_to_labels.keys(), f"{expr}: {names - name_to_labels.keys()}"
        exported = set().union(*(name_to_labels[n] for n in names))
        assert labels_used(expr) <= exported, f"{expr}: {labels_used(expr) - exported}"

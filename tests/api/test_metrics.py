"""GET /metrics on a real server: vLLM's families under `llmserve:`, per-key and job families."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig, MetricsConfig, ModelConfig, ServerConfig
from llmserve.metrics import TTFT_BUCKETS

from .conftest import LiveServer

MODEL = "org/fake-chat"
USER = [{"role": "user", "content": "Hi"}]
Serve = Callable[[object], LiveServer]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Every family the issue names, with the type the parser reports (counters without `_total`).
FAMILIES = {
    "llmserve:time_to_first_token_seconds": "histogram",
    "llmserve:inter_token_latency_seconds": "histogram",
    "llmserve:e2e_request_latency_seconds": "histogram",
    "llmserve:request_queue_time_seconds": "histogram",
    "llmserve:num_requests_running": "gauge",
    "llmserve:num_requests_waiting": "gauge",
    "llmserve:kv_cache_usage_perc": "gauge",
    "llmserve:prompt_tokens": "counter",
    "llmserve:generation_tokens": "counter",
    "llmserve:request_success": "counter",
    "llmserve:num_preemptions": "counter",
    "llmserve:api_key_requests": "counter",
    "llmserve:api_key_tokens": "counter",
    "llmserve:api_key_rejections": "counter",
    "llmserve:api_key_requests_in_flight": "gauge",
    "llmserve:batches": "gauge",
    "llmserve:batch_lines": "counter",
}


def start(
    serve: Serve, home: Path, backend: FakeBackend, metrics: MetricsConfig | None = None
) -> LiveServer:
    config = ServerConfig(
        models=(ModelConfig(MODEL, source="fake", backend="fake"),),
        home=home,
        metrics=metrics or MetricsConfig(),
        auth=AuthConfig(admin_key="lls-admin-secret"),
    )
    return serve(create_app(config, {MODEL: backend}, build_gatekeeper(config)))


async def scrape(server: LiveServer, headers: dict[str, str] | None = None) -> str:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(text: str) -> Samples:
    """Every sample of a scrape, by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def sdk(server: LiveServer, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)


async def test_three_chat_requests_show_in_every_family(serve: Serve, tmp_path: Path) -> None:
    key, secret = open_key_store(tmp_path).create_key(KeySpec(name="alice"))
    server = start(serve, tmp_path, FakeBackend(MODEL))
    before = samples(await scrape(server))
    async with sdk(server, secret) as client:
        first = await client.chat.completions.create(model=MODEL, messages=USER, max_tokens=4)
        second = await client.chat.completions.create(model=MODEL, messages=USER)
        stream = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
        )
        streamed = [chunk async for chunk in stream][-1].usage
    usages = [first.usage, second.usage, streamed]
    assert all(u is not None for u in usages)
    completion = sum(u.completion_tokens for u in usages if u is not None)
    prompt = sum(u.prompt_tokens for u in usages if u is not None)

    text = await scrape(server)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: families.get(name) for name in FAMILIES} == FAMILIES
    after = samples(text)
    model = {"model_name": MODEL}
    rose = value(after, "llmserve:generation_tokens_total", **model) - value(
        before, "llmserve:generation_tokens_total", **model
    )
    assert rose == completion
    assert value(after, "llmserve:prompt_tokens_total", **model) == prompt
    assert value(after, "llmserve:time_to_first_token_seconds_count", **model) == 3
    assert value(after, "llmserve:e2e_request_latency_seconds_count", **model) == 3
    assert value(after, "llmserve:request_queue_time_seconds_count", **model) == 3
    # One inter-token interval per token after the first of each response.
    assert value(after, "llmserve:inter_token_latency_seconds_count", **model) == completion - 3
    assert value(after, "llmserve:request_success_total", **model, finished_reason="length") == 1
    assert value(after, "llmserve:request_success_total", **model, finished_reason="stop") == 2
    buckets = {
        dict(labels)["le"]
        for (name, labels) in after
        if name.endswith("first_token_seconds_bucket")
    }
    assert buckets == {str(b) for b in TTFT_BUCKETS} | {"+Inf"}

    per_key = {"key_id": key.key_id, "model_name": MODEL}
    assert value(after, "llmserve:api_key_requests_total", **per_key, status="200") == 3
    assert value(after, "llmserve:api_key_tokens_total", **per_key, type="completion") == completion
    assert value(after, "llmserve:api_key_tokens_total", **per_key, type="prompt") == prompt
    assert value(after, "llmserve:api_key_requests_in_flight", **per_key) == 0
    assert value(after, "llmserve:batches", status="in_progress") == 0
    assert secret not in text


async def test_rejections_and_in_flight_are_counted_per_key(serve: Serve, tmp_path: Path) -> None:
    key, secret = open_key_store(tmp_path).create_key(KeySpec(name="bob", max_concurrency=1))
    backend = FakeBackend(MODEL, token_delay_s=0.05)
    server = start(serve, tmp_path, backend)
    async with sdk(server, secret) as client:
        running = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, extra_body={"ignore_eos": True}
        )
        await anext(aiter(running))
        while backend.load().num_running < 1:
            await asyncio.sleep(0.01)
        held = samples(await scrape(server))
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model=MODEL, messages=USER)
        await running.close()
    per_key = {"key_id": key.key_id, "model_name": MODEL}
    assert value(held, "llmserve:api_key_requests_in_flight", **per_key) == 1
    assert value(held, "llmserve:num_requests_running", model_name=MODEL) == 1
    found = samples(await scrape(server))
    assert value(found, "llmserve:api_key_rejections_total", **per_key, reason="rate_limited") == 1
    assert value(found, "llmserve:api_key_requests_total", **per_key, status="429") == 1


async def test_per_key_labels_can_be_folded_into_all(serve: Serve, tmp_path: Path) -> None:
    key, secret = open_key_store(tmp_path).create_key(KeySpec(name="carol"))
    server = start(serve, tmp_path, FakeBackend(MODEL), MetricsConfig(per_key=False))
    async with sdk(server, secret) as client:
        await client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
    text = await scrape(server)
    found = samples(text)
    labels = {"key_id": "all", "model_name": MODEL, "status": "200"}
    assert value(found, "llmserve:api_key_requests_total", **labels) == 1
    assert key.key_id not in text


async def test_metrics_can_require_the_admin_key(serve: Serve, tmp_path: Path) -> None:
    server = start(serve, tmp_path, FakeBackend(MODEL), MetricsConfig(require_admin_key=True))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        refused = await http.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    text = await scrape(server, {"authorization": "Bearer lls-admin-secret"})
    assert "llmserve:time_to_first_token_seconds" in text

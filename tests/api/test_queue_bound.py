"""`limits.max_queue` holds exactly under a burst, and every admitted request leaves the gauge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from open_gatekeeper import OpenGatekeeper

from llmserve.api.admission.queue_gauge import QueueGauge
from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import LimitsConfig, ModelConfig, ServerConfig
from llmserve.types import GenerateOutput, GenerateRequest

from .conftest import FAKE_MODEL

MAX_RUNNING, MAX_QUEUE, BURST = 2, 3, 40
CHAT = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


class GatedBackend(FakeBackend):
    """A fake model whose running requests hold their place until `gate` opens."""

    def __init__(self) -> None:
        super().__init__(FAKE_MODEL, max_concurrency=MAX_RUNNING)
        self.gate = asyncio.Event()
        self.num_in_backend = 0  # generate() calls in flight: running or waiting
        self.peak_waiting = 0

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.num_in_backend += 1
        self.peak_waiting = max(self.peak_waiting, self.num_in_backend - MAX_RUNNING)
        try:
            async for output in super().generate(request):
                await self.gate.wait()
                yield output
        finally:
            self.num_in_backend -= 1


def queue_app(backend: FakeBackend, **limits: Any) -> FastAPI:
    config = ServerConfig(
        models=(ModelConfig(FAKE_MODEL, source="fake", backend="fake"),),
        limits=LimitsConfig(max_queue=MAX_QUEUE, **limits),
    )
    return create_app(config, {FAKE_MODEL: backend}, OpenGatekeeper())


def gauge_of(app: FastAPI) -> QueueGauge:
    gauge: QueueGauge = app.state.llmserve.queue
    return gauge


@contextlib.asynccontextmanager
async def live_server(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """uvicorn on a free port of 127.0.0.1 in this event loop, and a client for it."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        limits = httpx.Limits(max_connections=BURST + 1, max_keepalive_connections=0)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def stream_chat(client: httpx.AsyncClient) -> tuple[int, dict[str, str], str]:
    """Status, headers and whole body of one streamed chat completion."""
    async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        return r.status_code, dict(r.headers), (await r.aread()).decode()


async def test_burst_admits_exactly_running_plus_queue() -> None:
    backend = GatedBackend()
    app = queue_app(backend)
    gauge = gauge_of(app)
    async with live_server(app) as client:
        tasks = [asyncio.create_task(stream_chat(client)) for _ in range(BURST)]
        await wait_until(lambda: sum(t.done() for t in tasks) + backend.num_in_backend == BURST)
        load = backend.load()
        assert (load.num_running, load.num_waiting) == (MAX_RUNNING, MAX_QUEUE)
        assert gauge.num_admitted(FAKE_MODEL) == MAX_RUNNING + MAX_QUEUE

        backend.gate.set()
        results = await asyncio.gather(*tasks)
        accepted = [body for status, _, body in results if status == 200]
        refused = [(headers, body) for status, headers, body in results if status == 503]
        assert len(accepted) == MAX_RUNNING + MAX_QUEUE
        assert len(refused) == BURST - MAX_RUNNING - MAX_QUEUE
        assert all(body.endswith("data: [DONE]\n\n") for body in accepted)
        for headers, body in refused:
            assert json.loads(body)["error"]["code"] == "server_is_overloaded"
            assert int(headers["retry-after"]) >= 1
        assert backend.peak_waiting == MAX_QUEUE

        await wait_until(lambda: gauge.num_admitted(FAKE_MODEL) == 0)
        status, _, body = await stream_chat(client)
        assert status == 200 and body.endswith("data: [DONE]\n\n")
        await wait_until(lambda: gauge.num_admitted(FAKE_MODEL) == 0)


@pytest.mark.parametrize(
    ("backend", "auth", "stream", "status"),
    [
        (FakeBackend(FAKE_MODEL), {}, True, 200),
        (FakeBackend(FAKE_MODEL), {}, False, 200),
        (FakeBackend(FAKE_MODEL, fail_after_tokens=1), {}, True, 200),  # error in-band
        (FakeBackend(FAKE_MODEL, fail_after_tokens=1), {}, False, 500),
        (FakeBackend(FAKE_MODEL, token_delay_s=0.05), {"request_timeout_s": 0.1}, True, 200),
        (FakeBackend(FAKE_MODEL, token_delay_s=0.05), {"request_timeout_s": 0.1}, False, 504),
    ],
    ids=["stream", "json", "stream-error", "json-error", "stream-timeout", "json-timeout"],
)
async def test_every_ending_leaves_the_gauge(
    backend: FakeBackend, auth: dict[str, Any], stream: bool, status: int
) -> None:
    app = queue_app(backend, **auth)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code == status
    assert gauge_of(app).num_admitted(FAKE_MODEL) == 0


async def test_client_gone_mid_stream_leaves_the_gauge() -> None:
    backend = FakeBackend(FAKE_MODEL, token_delay_s=0.05)
    app = queue_app(backend)
    async with live_server(app) as client:
        body = {**CHAT, "stream": True, "max_tokens": 100}
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert gauge_of(app).num_admitted(FAKE_MODEL) == 1
            await anext(response.aiter_lines())
        await wait_until(lambda: gauge_of(app).num_admitted(FAKE_MODEL) == 0)
    assert backend.aborted_request_ids

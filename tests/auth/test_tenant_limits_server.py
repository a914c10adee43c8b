"""Per-key limits through a real uvicorn server on 127.0.0.1 with the FakeBackend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from auth_live_server import (
    MODEL,
    MeteredBackend,
    auth,
    chat_body,
    fake_server_config,
    http_client,
    serve_in_process,
    wait_until,
)

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.keys import KeySpec
from llmserve.config import LimitsConfig


@dataclass
class Server:
    url: str
    backend: MeteredBackend
    gatekeeper: KeyGatekeeper


@pytest.fixture
def backend() -> MeteredBackend:
    """A slow fake model: each stream takes about a second."""
    return MeteredBackend(MODEL, token_delay_s=0.04, max_concurrency=64)


@pytest.fixture
async def server(tmp_path: Path, backend: MeteredBackend) -> AsyncIterator[Server]:
    """A live server over `backend` with keys in `tmp_path`."""
    config = fake_server_config(tmp_path, limits=LimitsConfig(max_queue=256))
    gatekeeper = build_gatekeeper(config)
    app = create_app(config, {MODEL: backend}, gatekeeper)
    async with serve_in_process(app) as url:
        yield Server(url, backend, gatekeeper)


async def stream_chat(client: httpx.AsyncClient, secret: str) -> tuple[int, dict[str, str], str]:
    """Status, headers and full body of one streamed chat completion."""
    async with client.stream(
        "POST", "/v1/chat/completions", json=chat_body(), headers=auth(secret)
    ) as r:
        body = (await r.aread()).decode()
        return r.status_code, dict(r.headers), body


async def test_burst_of_200_streams_never_exceeds_limit_of_5(server: Server) -> None:
    key, secret = server.gatekeeper.store.create_key(KeySpec("alice", max_concurrency=5))
    peak_in_flight = 0

    async def watch() -> None:
        nonlocal peak_in_flight
        while True:
            peak_in_flight = max(peak_in_flight, await server.gatekeeper.num_in_flight(key.key_id))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    async with http_client(server.url) as client:
        results = await asyncio.gather(*(stream_chat(client, secret) for _ in range(200)))
        watcher.cancel()
        ok = [r for r in results if r[0] == 200]
        rejected = [r for r in results if r[0] != 200]
        assert server.backend.peak_active <= 5 and peak_in_flight <= 5
        assert len(ok) >= 5 and len(ok) + len(rejected) == 200
        assert all(body.rstrip().endswith("data: [DONE]") for _, _, body in ok)
        for status, headers, body in rejected:
            assert status == 429
            assert '"code":"rate_limit_exceeded"' in body.replace(" ", "")
            assert "the limit is 5 concurrent requests" in body
            assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) > 0
        assert ok[0][1]["x-ratelimit-limit-concurrency"] == "5"
        assert await server.gatekeeper.num_in_flight(key.key_id) == 0
        server.backend.peak_active = 0
        again = await asyncio.gather(*(stream_chat(client, secret) for _ in range(5)))
        assert [status for status, _, _ in again] == [200] * 5
        assert server.backend.peak_active == 5
    [usage] = await server.gatekeeper.usage("alice")
    assert (usage.requests, usage.rejections) == (len(ok) + 5, len(rejected))
    assert usage.completion_tokens > 0 and usage.errors == 0


async def test_disconnecting_clients_free_slots_and_backend(tmp_path: Path) -> None:
    backend = MeteredBackend(
        MODEL, reply="x" * 200, max_model_len=512, token_delay_s=0.05, max_concurrency=64
    )
    config = fake_server_config(tmp_path)
    gatekeeper = build_gatekeeper(config)
    key, secret = gatekeeper.store.create_key(KeySpec("alice", max_concurrency=50))
    app = create_app(config, {MODEL: backend}, gatekeeper)
    async with serve_in_process(app) as url, http_client(url) as client:

        async def read_one_chunk_then_leave() -> None:
            async with client.stream(
                "POST", "/v1/chat/completions", json=chat_body(), headers=auth(secret)
            ) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        return  # closes the connection mid-stream

        await asyncio.gather(*(read_one_chunk_then_leave() for _ in range(50)))

        async def all_released() -> bool:
            # NOTE: the server notices each disconnect a few event-loop turns after the client
            # left; wait for the state asserted below, not for a sign that comes before it.
            if await gatekeeper.num_in_flight(key.key_id) or backend.num_active:
                return False
            return [row.requests for row in await gatekeeper.usage("alice")] == [50]

        await wait_until(all_released, 30)
        assert backend.load().num_running == 0
        # Aborted, not finished: each stream would have run 10 s more without its client.
        assert len(backend.aborted_request_ids) == 50


async def test_full_queue_answers_503(tmp_path: Path) -> None:
    backend = MeteredBackend(MODEL, token_delay_s=0.02, max_concurrency=2)
    config = fake_server_config(tmp_path, limits=LimitsConfig(max_queue=3))
    gatekeeper = build_gatekeeper(config)
    app = create_app(config, {MODEL: backend}, gatekeeper)
    async with serve_in_process(app) as url, http_client(url) as client:
        # 2 running and 3 waiting: the queue is full
        first = [asyncio.create_task(stream_chat(client, "none")) for _ in range(5)]
        await wait_until(lambda: backend.load().num_waiting >= 3, 5)
        status, headers, body = await stream_chat(client, "none")
        assert status == 503
        assert "server_is_overloaded" in body and int(headers["retry-after"]) >= 1
        assert [status for status, _, _ in await asyncio.gather(*first)] == [200] * 5

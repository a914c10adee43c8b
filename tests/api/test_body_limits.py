"""Huge and stalled bodies cost their sender an error, and nobody else a stalled stream."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.local import LocalBackend
from llmserve.config import (
    BUILTIN_CHAT_MODEL,
    EngineConfig,
    LimitsConfig,
    ModelConfig,
    ServerConfig,
)

MODEL = "tiny-local"
MB = 2**20


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL)
    engine = EngineConfig(kv_cache_memory_mb=16, max_num_seqs=8)
    limits = LimitsConfig(body_timeout_s=1.0)
    config = ServerConfig(models=(model,), home=tmp_path, engine=engine, limits=limits)
    app = create_app(
        config, {MODEL: LocalBackend(model, engine, tmp_path)}, build_gatekeeper(config)
    )
    with LiveServer(app) as server:
        yield server.url


def chat_body(content: str, **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


async def stream_gaps(http: httpx.AsyncClient) -> list[float]:
    """Seconds between the SSE events of one long stream (ends at [DONE])."""
    body = chat_body("Tell me a long story", max_tokens=400, ignore_eos=True, stream=True)
    gaps, last, lines = [], time.perf_counter(), []
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                lines.append(line[6:])
    assert lines[-1] == "[DONE]"
    assert "error" not in lines[-2]
    return gaps[1:]  # from the first event on: the wait before it is admission, not a stall


async def timed_post(http: httpx.AsyncClient, content: bytes) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = await http.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    return response, time.perf_counter() - start


async def poll_health(http: httpx.AsyncClient, until: asyncio.Future[object]) -> list[float]:
    times = []
    while not until.done():
        start = time.perf_counter()
        assert (await http.get("/health")).status_code == 200
        times.append(time.perf_counter() - start)
        await asyncio.sleep(0.05)
    return times


async def test_huge_bodies_are_refused_fast_while_others_stream(base_url: str) -> None:
    ten_mb = json.dumps(chat_body("x" * (10 * MB))).encode()
    seven_mb = json.dumps(chat_body("hello world " * (7 * MB // 12))).encode()
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        stream = asyncio.ensure_future(stream_gaps(http))
        await asyncio.sleep(0)  # the stream starts before the huge bodies arrive
        health = asyncio.ensure_future(poll_health(http, stream))
        (too_large, large_time), (too_long, long_time) = [
            await timed_post(http, ten_mb),
            await timed_post(http, seven_mb),
        ]
        gaps, health_times = await stream, await health
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "request_too_large"
    assert "8388608 bytes (8 MB)" in too_large.json()["error"]["message"]
    assert large_time < 3
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert long_time < 3
    assert max(gaps) < 2
    assert health_times and max(health_times) < 1


async def test_chunked_body_over_the_limit_gets_413(base_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * MB

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        response = await http.post(
            "/v1/completions", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_headers_without_a_body_get_408(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "request_timeout"

"""`limits.request_timeout_s`: a slow request is aborted, its slot freed, the client told."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import DEFAULT_REPLY, FakeBackend
from llmserve.config import LimitsConfig, ModelConfig, ServerConfig

from .conftest import FAKE_MODEL, LiveServer

TIMEOUT_S = 0.2
MESSAGE = (
    "The request timed out after 0.2 seconds; the generation was stopped. "
    "Ask for fewer tokens (max_tokens) or retry later."
)
TIMEOUT_ERROR = {"message": MESSAGE, "type": "server_error", "param": None, "code": "timeout"}
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/completions": {"prompt": "Hi"},
    "/v1/responses": {"input": "Hi"},
}


@pytest.fixture
def slow_backend() -> FakeBackend:
    """25 tokens at 50 ms each: far longer than the timeout."""
    return FakeBackend(FAKE_MODEL, token_delay_s=0.05)


def timeout_app(backend: FakeBackend, gatekeeper: OpenGatekeeper) -> FastAPI:
    config = ServerConfig(
        models=(ModelConfig(FAKE_MODEL, source="fake", backend="fake"),),
        limits=LimitsConfig(request_timeout_s=TIMEOUT_S),
    )
    return create_app(config, {FAKE_MODEL: backend}, gatekeeper)


@pytest.fixture
async def http(
    slow_backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=timeout_app(slow_backend, gatekeeper))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_aborted_and_released(backend: FakeBackend, gatekeeper: OpenGatekeeper) -> None:
    assert backend.load().num_running == 0
    assert len(backend.aborted_request_ids) == 1
    assert gatekeeper.num_in_flight == 0
    assert len(gatekeeper.usage) == 1
    assert gatekeeper.usage[0].is_error


@pytest.mark.parametrize("path", list(BODIES))
async def test_slow_request_gets_504_timeout(
    http: httpx.AsyncClient,
    slow_backend: FakeBackend,
    gatekeeper: OpenGatekeeper,
    path: str,
) -> None:
    started = time.monotonic()
    response = await http.post(path, json={"model": FAKE_MODEL, **BODIES[path]})
    assert time.monotonic() - started < 1.0  # the reply would take 1.25 s
    assert response.status_code == 504
    assert response.json() == {"error": TIMEOUT_ERROR}
    assert_aborted_and_released(slow_backend, gatekeeper)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_slow_stream_ends_with_timeout_error_then_done(
    http: httpx.AsyncClient,
    slow_backend: FakeBackend,
    gatekeeper: OpenGatekeeper,
    path: str,
) -> None:
    response = await http.post(path, json={"model": FAKE_MODEL, "stream": True, **BODIES[path]})
    assert response.status_code == 200
    blocks = response.text.split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    assert json.loads(blocks[-3].removeprefix("data: ")) == {"error": TIMEOUT_ERROR}
    texts = [json.loads(b.removeprefix("data: ")) for b in blocks[:-3]]
    assert texts  # some chunks were sent before the deadline
    assert gatekeeper.usage[0].completion_tokens < len(DEFAULT_REPLY)
    assert_aborted_and_released(slow_backend, gatekeeper)


async def test_slow_responses_stream_ends_with_error_event(
    http: httpx.AsyncClient, slow_backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> None:
    body = {"model": FAKE_MODEL, "stream": True, **BODIES["/v1/responses"]}
    response = await http.post("/v1/responses", json=body)
    blocks = response.text.split("\n\n")
    assert blocks[-1] == ""
    name, data = blocks[-2].split("\n")
    numbers = [
        json.loads(b.split("\n")[1].removeprefix("data: "))["sequence_number"] for b in blocks[:-2]
    ]
    assert name == "event: error"
    assert json.loads(data.removeprefix("data: ")) == {
        "type": "error",
        "code": "timeout",
        "message": MESSAGE,
        "param": None,
        "sequence_number": len(numbers),
    }
    assert numbers == list(range(len(numbers)))
    assert_aborted_and_released(slow_backend, gatekeeper)


async def test_request_within_timeout_is_untouched(
    http: httpx.AsyncClient, slow_backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> None:
    body = {"model": FAKE_MODEL, "prompt": "Hi", "max_tokens": 1}
    response = await http.post("/v1/completions", json=body)
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == DEFAULT_REPLY[:1]
    assert slow_backend.aborted_request_ids == []
    assert not gatekeeper.usage[0].is_error


async def test_stream_times_out_through_a_real_server(
    slow_backend: FakeBackend,
    gatekeeper: OpenGatekeeper,
    serve: Callable[[object], LiveServer],
) -> None:
    server = serve(timeout_app(slow_backend, gatekeeper))
    body = {"model": FAKE_MODEL, "stream": True, **BODIES["/v1/chat/completions"]}
    async with httpx.AsyncClient(base_url=server.base_url) as live:
        response = await live.post("/v1/chat/completions", json=body)
    blocks = response.text.split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    assert json.loads(blocks[-3].removeprefix("data: ")) == {"error": TIMEOUT_ERROR}
    # The server releases the slot just after the last byte: wait for it, then look.
    deadline = time.monotonic() + 30
    while not (gatekeeper.usage and gatekeeper.num_in_flight == 0):
        assert time.monotonic() < deadline, "the slot was not released"
        await asyncio.sleep(0.01)
    assert_aborted_and_released(slow_backend, gatekeeper)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="request_timeout_s must be positive"):
        LimitsConfig(request_timeout_s=0)

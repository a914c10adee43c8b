"""The drain's cut-off in one app: non-streaming requests get a 503, Responses streams an error
event; /health says draining while /live stays up; usage is recorded as errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.admission import ServerState
from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend

from .conftest import FAKE_MODEL, fake_config

LONG = {"model": FAKE_MODEL, "max_tokens": 2000, "ignore_eos": True}
USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(FAKE_MODEL, max_model_len=4096, token_delay_s=0.02)


@pytest.fixture
async def app_client(
    backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> AsyncIterator[tuple[httpx.AsyncClient, ServerState]]:
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: backend}, gatekeeper)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http, app.state.llmserve


async def cut_off_once_running(
    backend: FakeBackend, state: ServerState, request: asyncio.Task[httpx.Response]
) -> httpx.Response:
    """Begin a drain with no time left once the backend runs the request; its answer."""
    while backend.load().num_running < 1:
        await asyncio.sleep(0.01)
    state.drain.begin(0.0)
    return await asyncio.wait_for(request, timeout=30)


async def test_a_non_streaming_request_cut_off_gets_503(
    app_client: tuple[httpx.AsyncClient, ServerState],
    backend: FakeBackend,
    gatekeeper: OpenGatekeeper,
) -> None:
    http, state = app_client
    body: dict[str, Any] = {**LONG, "messages": USER}
    request = asyncio.create_task(http.post("/v1/chat/completions", json=body))
    response = await cut_off_once_running(backend, state, request)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "server_is_overloaded"
    assert error["message"].startswith("The server is shutting down and stopped this request")
    assert response.headers["retry-after"] == "1"
    [usage] = gatekeeper.usage
    assert usage.is_error and usage.prompt_tokens > 0
    assert backend.load().num_running == 0  # aborted in the backend


async def test_a_responses_stream_cut_off_ends_with_an_error_event(
    app_client: tuple[httpx.AsyncClient, ServerState], backend: FakeBackend
) -> None:
    http, state = app_client
    body: dict[str, Any] = {"model": FAKE_MODEL, "input": "Hi", "stream": True}
    body["max_output_tokens"] = 2000
    request = asyncio.create_task(http.post("/v1/responses", json=body))
    response = await cut_off_once_running(backend, state, request)
    assert response.status_code == 200
    last = response.text.strip().split("\n\n")[-1]
    event, data = last.split("\n")
    assert event == "event: error"
    assert json.loads(data.removeprefix("data: "))["code"] == "server_is_overloaded"


async def test_health_says_draining_while_live_stays_up(
    app_client: tuple[httpx.AsyncClient, ServerState],
) -> None:
    http, state = app_client
    assert (await http.get("/health")).json()["status"] == "ok"
    state.drain.begin(30.0)
    health = await http.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "draining"
    assert (await http.get("/live")).json() == {"status": "alive"}
    refused = await http.post("/v1/chat/completions", json={**LONG, "messages": USER})
    assert refused.status_code == 503
    assert refused.json()["error"]["message"].startswith(
        "The server is shutting down and accepts no new requests"
    )

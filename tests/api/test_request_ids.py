"""The server makes every request id itself; a client's `x-request-id` is echoed and logged only."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest

from .conftest import FAKE_MODEL, fake_config

USER = [{"role": "user", "content": "Hi"}]
SERVER_ID = re.compile(r"^req_[0-9a-f]{32}$")


async def test_a_clients_x_request_id_is_echoed_but_never_the_id(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    body = {"model": FAKE_MODEL, "messages": USER, "max_tokens": 2}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"x-request-id": "client-id-1"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-id-1"
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{32}", response.json()["id"])


async def test_without_x_request_id_the_servers_id_is_echoed(client: httpx.AsyncClient) -> None:
    body = {"model": FAKE_MODEL, "messages": USER, "max_tokens": 2}
    response = await client.post("/v1/chat/completions", json=body)
    request_id = response.headers["x-request-id"]
    assert SERVER_ID.match(request_id)
    assert response.json()["id"] == "chatcmpl-" + request_id.removeprefix("req_")


async def test_the_log_links_the_clients_id_to_the_server_id_of_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend(FAKE_MODEL, fail_after_tokens=1)
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: backend}, OpenGatekeeper())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    caplog.set_level(logging.INFO, logger="llmserve.api.http.middleware")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": FAKE_MODEL, "messages": USER},
            headers={"x-request-id": "client-id-2"},
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "client-id-2"
    (server_id,) = re.findall(r"req_[0-9a-f]{32}", response.json()["error"]["message"])
    assert f"request {server_id} has x-request-id client-id-2" in caplog.text


async def test_fake_backend_refuses_a_request_id_in_flight() -> None:
    backend = FakeBackend(FAKE_MODEL)
    request = GenerateRequest("same", (1, 2), SamplingParams(max_tokens=3, ignore_eos=True))
    first = backend.generate(request)
    await anext(first)
    with pytest.raises(ValueError, match="request 'same' is already in flight"):
        await anext(backend.generate(request))
    assert [o.num_output_tokens async for o in first] == [2, 3]
    assert len([o async for o in backend.generate(request)]) == 3  # free again once done

"""GET /v1/models, /v1/models/{model}, /health and /version."""

from __future__ import annotations

import time

import httpx
from open_gatekeeper import OpenGatekeeper

from llmserve import __version__
from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

from .conftest import FAKE_MODEL


async def test_models_lists_served_models(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers={"authorization": "Bearer **********"})
    assert response.status_code == 200
    body = response.json()
    created = body["data"][0].pop("created")
    assert body == {
        "object": "list",
        "data": [{"id": FAKE_MODEL, "object": "model", "owned_by": "llmserve"}],
    }
    assert abs(created - time.time()) < 60  # a Unix timestamp, as OpenAI gives


async def test_model_with_slash_is_retrieved_url_encoded() -> None:
    name = "org/some-model"
    config = ServerConfig(models=(ModelConfig(name, source="fake", backend="fake"),))
    app = create_app(config, {name: FakeBackend(name)}, OpenGatekeeper())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        encoded = await c.get("/v1/models/org%2Fsome-model")
        plain = await c.get("/v1/models/org/some-model")
        missing = await c.get("/v1/models/org/other")
    assert encoded.status_code == 200
    assert encoded.json()["id"] == name
    assert plain.json()["id"] == name
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


async def test_health_reports_backend_load(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.json() == {
        "status": "ok",
        "models": {FAKE_MODEL: {"num_running": 0, "num_waiting": 0}},
    }


async def test_version(client: httpx.AsyncClient) -> None:
    assert (await client.get("/version")).json() == {"version": __version__}

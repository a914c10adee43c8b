"""What clients see of auth: 401 for bad keys, 404 for models a key may not use, open listing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from auth_live_server import MODEL, auth, chat_body, serve_in_process

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.keys import KeySpec
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

OTHER = "other-model"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[str, KeyGatekeeper]]:
    """A server with two fake models; yields its URL and gatekeeper."""
    models = (
        ModelConfig(MODEL, source="fake", backend="fake"),
        ModelConfig(OTHER, source="fake", backend="fake", public=False),
    )
    config = ServerConfig(models=models, home=tmp_path)
    gatekeeper = build_gatekeeper(config)
    backends = {MODEL: FakeBackend(MODEL), OTHER: FakeBackend(OTHER)}
    async with serve_in_process(create_app(config, backends, gatekeeper)) as url:
        yield url, gatekeeper


async def test_server_without_keys_is_open(live: tuple[str, KeyGatekeeper]) -> None:
    url, _ = live
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=False))
    assert response.status_code == 200


async def test_once_a_key_exists_every_call_needs_one(live: tuple[str, KeyGatekeeper]) -> None:
    url, gatekeeper = live
    _, secret = gatekeeper.store.create_key(KeySpec("alice"))
    async with httpx.AsyncClient(base_url=url) as client:
        missing = await client.post("/v1/chat/completions", json=chat_body(stream=False))
        wrong = await client.post(
            "/v1/chat/completions", json=chat_body(stream=False), headers=auth("lls-nope-nope-nope")
        )
        good = await client.post(
            "/v1/chat/completions", json=chat_body(stream=False), headers=auth(secret)
        )
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert "You didn't provide an API key" in missing.json()["error"]["message"]
    assert wrong.json()["error"]["message"].startswith("Incorrect API key provided: lls-no")
    assert good.status_code == 200


async def test_revoked_and_expired_keys_get_401_through_the_openai_sdk(
    live: tuple[str, KeyGatekeeper],
) -> None:
    url, gatekeeper = live
    _, revoked = gatekeeper.store.create_key(KeySpec("old"))
    _, expired = gatekeeper.store.create_key(KeySpec("short", expires_in_s=0.2))
    _, good = gatekeeper.store.create_key(KeySpec("good"))
    gatekeeper.store.revoke("old")
    await asyncio.sleep(0.3)
    for secret in (revoked, expired):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.code == "invalid_api_key"
        await client.close()
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=good, max_retries=0)
    reply = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    await client.close()


async def test_key_limited_to_some_models_gets_404_for_others(
    live: tuple[str, KeyGatekeeper],
) -> None:
    url, gatekeeper = live
    _, secret = gatekeeper.store.create_key(KeySpec("alice", allowed_models=frozenset({OTHER})))
    async with httpx.AsyncClient(base_url=url, headers=auth(secret)) as client:
        denied = await client.post("/v1/chat/completions", json=chat_body(stream=False))
        listed = await client.get("/v1/models")
    assert denied.status_code == 404
    assert denied.json()["error"] == {
        "message": f"The model `{MODEL}` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert [m["id"] for m in listed.json()["data"]] == [OTHER]


async def test_model_listing_answers_any_bearer_with_public_models(
    live: tuple[str, KeyGatekeeper],
) -> None:
    url, gatekeeper = live
    gatekeeper.store.create_key(KeySpec("alice"))
    async with httpx.AsyncClient(base_url=url) as client:
        masked = await client.get("/v1/models", headers=auth("**********"))
    assert masked.status_code == 200
    assert [m["id"] for m in masked.json()["data"]] == [MODEL]

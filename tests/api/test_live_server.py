"""The real openai SDK against a real uvicorn server on 127.0.0.1 serving FakeBackends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.fake import DEFAULT_REPLY, FakeBackend
from llmserve.config import LimitsConfig, ModelConfig, ServerConfig

from .conftest import LiveServer

MODEL = "org/fake-chat"
USER = [{"role": "user", "content": "Hi"}]
Serve = Callable[[object], LiveServer]


def start(serve: Serve, home: Path, backend: FakeBackend, **limits: object) -> LiveServer:
    """A live server for `backend` with the real key gatekeeper over `home`."""
    config = ServerConfig(
        models=(ModelConfig(MODEL, source="fake", backend="fake"),),
        home=home,
        limits=LimitsConfig(**limits),  # type: ignore[arg-type]
    )
    return serve(create_app(config, {MODEL: backend}, build_gatekeeper(config)))


def sdk(server: LiveServer, api_key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)


async def test_sdk_chat_stream_and_models(serve: Serve, tmp_path: Path) -> None:
    server = start(serve, tmp_path, FakeBackend(MODEL))
    async with sdk(server) as client:
        reply = await client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5)
        assert reply.choices[0].message.content == DEFAULT_REPLY[:5]
        assert reply.usage is not None and reply.usage.completion_tokens == 5
        stream = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
        )
        parts, usage = [], None
        async for chunk in stream:
            parts.extend(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        assert "".join(parts) == DEFAULT_REPLY
        assert usage is not None and usage.completion_tokens == len(DEFAULT_REPLY) + 1
        text = await client.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert text.choices[0].text == DEFAULT_REPLY[:2]
        assert [m.id for m in (await client.models.list()).data] == [MODEL]
        assert (await client.models.retrieve(MODEL)).id == MODEL


async def test_sdk_error_classes(serve: Serve, tmp_path: Path) -> None:
    server = start(serve, tmp_path, FakeBackend(MODEL))
    async with sdk(server) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model=MODEL, messages=USER, temperature=5)
        assert bad.value.param == "temperature"  # type: ignore[attr-defined]
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="nope", messages=USER)
        assert missing.value.code == "model_not_found"


async def test_sdk_sees_authentication_error_for_a_bad_key(serve: Serve, tmp_path: Path) -> None:
    open_key_store(tmp_path).create_key(KeySpec(name="alice"))
    server = start(serve, tmp_path, FakeBackend(MODEL))
    async with sdk(server, api_key="lls-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as denied:
            await client.chat.completions.create(model=MODEL, messages=USER)
    assert denied.value.code == "invalid_api_key"


async def test_second_request_over_the_key_limit_gets_429(serve: Serve, tmp_path: Path) -> None:
    _, secret = open_key_store(tmp_path).create_key(KeySpec(name="alice", max_concurrency=1))
    server = start(serve, tmp_path, FakeBackend(MODEL, token_delay_s=0.05))
    async with sdk(server, api_key=secret) as client:
        first = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, extra_body={"ignore_eos": True}
        )
        await anext(aiter(first))
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model=MODEL, messages=USER)
        await first.close()
    headers = limited.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert int(headers["retry-after-ms"]) >= 1


async def test_full_queue_gets_503(serve: Serve, tmp_path: Path) -> None:
    backend = FakeBackend(MODEL, max_concurrency=1, token_delay_s=0.05)
    server = start(serve, tmp_path, backend, max_queue=1)
    body = {"model": MODEL, "messages": USER, "ignore_eos": True, "max_tokens": 100}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        running = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        waiting = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        while backend.load().num_waiting < 1:
            await asyncio.sleep(0.01)
        async with sdk(server) as client:
            with pytest.raises(openai.InternalServerError) as overloaded:
                await client.chat.completions.create(model=MODEL, messages=USER)
        for task in (running, waiting):
            task.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
    assert overloaded.value.status_code == 503
    assert overloaded.value.code == "server_is_overloaded"
    assert overloaded.value.response.headers["retry-after"] == "1"


async def test_backend_failure_is_internal_server_error(serve: Serve, tmp_path: Path) -> None:
    server = start(serve, tmp_path, FakeBackend(MODEL, fail_after_tokens=0))
    async with sdk(server) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(model=MODEL, messages=USER)
    request_id = failed.value.response.headers["x-request-id"]
    assert request_id in failed.value.message
    assert "Traceback" not in failed.value.response.text


async def wait_until_released(server: LiveServer, backend: FakeBackend, key_id: str) -> None:
    """Until the backend aborted the request and the key's slot is free again.

    NOTE: the server notices a disconnect a few event-loop turns after the client left, and
    frees the slot after the abort: wait for all of it, not for the first sign.
    """
    gatekeeper = server.server.config.app.state.llmserve.gatekeeper
    deadline = time.monotonic() + 30
    while (
        backend.load().num_running
        or not backend.aborted_request_ids
        or await gatekeeper.num_in_flight(key_id)
    ):
        assert time.monotonic() < deadline, "the request was not aborted and released"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("stream", [True, False])
async def test_client_disconnect_aborts_the_request(
    serve: Serve, tmp_path: Path, stream: bool
) -> None:
    backend = FakeBackend(MODEL, token_delay_s=0.05)
    key, secret = open_key_store(tmp_path).create_key(KeySpec(name="alice", max_concurrency=1))
    server = start(serve, tmp_path, backend)
    body = {"model": MODEL, "messages": USER, "ignore_eos": True, "stream": stream}
    headers = {"authorization": f"Bearer {secret}", "x-request-id": "leaving"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        if stream:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    delta = json.loads(line[6:])["choices"][0]["delta"] if line else {}
                    if delta.get("content"):  # the backend is generating
                        break
        else:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/v1/chat/completions", json=body, timeout=0.3)
        await wait_until_released(server, backend, key.key_id)
        (aborted,) = backend.aborted_request_ids
        assert aborted.startswith("req_")  # the server's own id, never the client's x-request-id
        # The key's only slot is free again.
        again = await http.post(
            "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 2}
        )
        assert again.status_code == 200


async def test_key_sees_only_its_models_and_gets_ratelimit_headers(
    serve: Serve, tmp_path: Path
) -> None:
    store = open_key_store(tmp_path)
    _, limited = store.create_key(KeySpec(name="bob", allowed_models=frozenset({"other"})))
    _, full = store.create_key(KeySpec(name="carol", max_concurrency=3, rpm=100))
    server = start(serve, tmp_path, FakeBackend(MODEL))
    async with sdk(server, api_key=limited) as client:
        with pytest.raises(openai.NotFoundError) as hidden:
            await client.chat.completions.create(model=MODEL, messages=USER)
        assert hidden.value.code == "model_not_found"
        assert (await client.models.list()).data == []
    async with sdk(server, api_key=full) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=USER, max_tokens=1
        )
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert raw.headers["x-ratelimit-limit-concurrency"] == "3"

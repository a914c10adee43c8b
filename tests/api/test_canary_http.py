"""A canary model in the local runtime, over real HTTP with real keys: sticky per key, split by
weight, `x-llmserve-variant` on every answer, usage per variant, live weights with no broken
stream (`PUT /admin/models/{model}/variants` and `llmserve canary set`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.keys import KeySpec
from llmserve.backends.factory import build_backends
from llmserve.backends.fake import FakeBackend
from llmserve.backends.variants import VariantBackend
from llmserve.cli import main
from llmserve.config import (
    BUILTIN_CHAT_MODEL,
    AuthConfig,
    EngineConfig,
    ModelConfig,
    ServerConfig,
    VariantConfig,
)

MODEL = "chat-canary"
ADMIN_KEY = "adm-canary-secret"
FOLLOW_DEADLINE_S = 10  # the issue: new requests follow a live change within 10 s


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 with uvicorn; yields its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def canary_config(home: Path) -> ServerConfig:
    variants = (VariantConfig("v1", "fake", 80), VariantConfig("v2", "fake", 20))
    model = ModelConfig(MODEL, variants=variants, backend="fake")
    return ServerConfig(models=(model,), home=home, auth=AuthConfig(admin_key=ADMIN_KEY))


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[str, KeyGatekeeper]]:
    """A server whose canary model has two slow fake variants, 80/20; its URL and gatekeeper."""
    config = canary_config(tmp_path)
    variants = {name: FakeBackend(MODEL, token_delay_s=0.01) for name in ("v1", "v2")}
    backend = VariantBackend(MODEL, variants, {"v1": 80, "v2": 20})
    gatekeeper = build_gatekeeper(config)
    assert isinstance(gatekeeper, KeyGatekeeper)
    async with serve(create_app(config, {MODEL: backend}, gatekeeper)) as url:
        yield url, gatekeeper


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def chat(max_tokens: int = 2, stream: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def variants_met(client: httpx.AsyncClient, secret: str, num_requests: int) -> list[str]:
    """The variant of each of `num_requests` chats of key `secret` (all must answer 200)."""
    met = []
    for _ in range(num_requests):
        response = await client.post("/v1/chat/completions", json=chat(), headers=bearer(secret))
        assert response.status_code == 200, response.text
        met.append(response.headers["x-llmserve-variant"])
    return met


async def make_keys(gatekeeper: KeyGatekeeper, num_keys: int) -> list[str]:
    return [(await gatekeeper.create_key(KeySpec(f"user-{i}")))[1] for i in range(num_keys)]


async def test_forty_keys_each_meet_one_variant_and_split_by_weight(
    live: tuple[str, KeyGatekeeper],
) -> None:
    url, gatekeeper = live
    secrets = await make_keys(gatekeeper, 40)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        per_key = await asyncio.gather(*(variants_met(client, s, 5) for s in secrets))
    assert all(len(set(met)) == 1 for met in per_key)
    share_v2 = sum(met[0] == "v2" for met in per_key) / len(per_key)
    assert abs(share_v2 - 0.2) <= 0.10


async def test_usage_is_kept_per_variant(live: tuple[str, KeyGatekeeper]) -> None:
    url, gatekeeper = live
    secrets = await make_keys(gatekeeper, 10)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        met = {s: (await variants_met(client, s, 2))[0] for s in secrets}
        usage = await client.get("/admin/usage", headers=bearer(ADMIN_KEY))
    requests_by_model: dict[str, int] = {}
    for row in usage.json()["data"]:
        requests_by_model[row["model"]] = requests_by_model.get(row["model"], 0) + row["requests"]
    expected = {f"{MODEL}@{v}": 2 * list(met.values()).count(v) for v in set(met.values())}
    assert requests_by_model == expected


async def test_live_change_is_followed_and_open_streams_finish(
    live: tuple[str, KeyGatekeeper],
) -> None:
    url, gatekeeper = live
    secrets = await make_keys(gatekeeper, 40)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        before = {s: (await variants_met(client, s, 1))[0] for s in secrets}
        started: list[str] = []
        streams = [asyncio.create_task(read_stream(client, s, started)) for s in secrets[:8]]
        await wait_for(lambda: len(started) == len(streams), 30)  # all open when weights change
        changed = await client.put(
            f"/admin/models/{MODEL}/variants",
            json={"variants": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}]},
            headers=bearer(ADMIN_KEY),
        )
        assert changed.status_code == 200
        assert changed.json() == {
            "model": MODEL,
            "variants": [{"name": "v1", "weight": 50.0}, {"name": "v2", "weight": 50.0}],
        }
        deadline = time.monotonic() + FOLLOW_DEADLINE_S
        while True:
            after = {s: (await variants_met(client, s, 1))[0] for s in secrets}
            share_v2 = list(after.values()).count("v2") / len(after)
            if abs(share_v2 - 0.5) <= 0.10 or time.monotonic() > deadline:
                break
        ends = await asyncio.gather(*streams)
    assert abs(share_v2 - 0.5) <= 0.10
    assert all(before[s] == "v1" for s in secrets if after[s] == "v1")  # only v1 keys moved
    assert all(end[0] in ("stop", "length") and end[1] == "[DONE]" for end in ends)


async def read_stream(
    client: httpx.AsyncClient, secret: str, started: list[str]
) -> tuple[str | None, str]:
    """Stream a long chat (noting its first chunk in `started`); its finish and last line."""
    finish, last = None, ""
    async with client.stream(
        "POST", "/v1/chat/completions", json=chat(200, stream=True), headers=bearer(secret)
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            last = line.removeprefix("data: ")
            if secret not in started:
                started.append(secret)
            if last != "[DONE]":
                chunk = json.loads(last)
                assert "error" not in chunk
                finish = chunk["choices"][0]["finish_reason"] or finish
    return finish, last


async def wait_for(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("headers", "path", "body", "status", "message"),
    [
        ({}, MODEL, {"variants": []}, 401, "The admin API needs the admin key as a Bearer token."),
        (
            bearer(ADMIN_KEY),
            "no-such-model",
            {"variants": [{"name": "v1", "weight": 1}]},
            404,
            "The model `no-such-model` does not exist or has no variants.",
        ),
        (
            bearer(ADMIN_KEY),
            MODEL,
            {"variants": [{"name": "v1", "weight": 1}, {"name": "v3", "weight": 1}]},
            400,
            "Invalid 'variants': give a weight for each variant (v1, v2), and no other; got "
            "v1, v3.",
        ),
    ],
)
async def test_bad_weight_changes_are_refused(
    live: tuple[str, KeyGatekeeper],
    headers: dict[str, str],
    path: str,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    url, _ = live
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.put(f"/admin/models/{path}/variants", json=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message


async def test_negative_weight_names_the_field(live: tuple[str, KeyGatekeeper]) -> None:
    url, _ = live
    body = {"variants": [{"name": "v1", "weight": -1}, {"name": "v2", "weight": 1}]}
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.put(
            f"/admin/models/{MODEL}/variants", json=body, headers=bearer(ADMIN_KEY)
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "variants.0.weight"


async def test_canary_set_command_changes_the_weights(
    live: tuple[str, KeyGatekeeper],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = live
    monkeypatch.setenv("LLMSERVE_ADMIN_KEY", ADMIN_KEY)
    argv = ["canary", "set", MODEL, "v1=30", "v2=70", "--base-url", url]
    assert await asyncio.to_thread(main, argv) == 0
    assert capsys.readouterr().out == f"{MODEL}: v1=30, v2=70\n"
    async with httpx.AsyncClient(base_url=url) as client:
        health = (await client.get("/health")).json()
    variants = health["models"][MODEL]["variants"]
    assert {name: v["weight"] for name, v in variants.items()} == {"v1": 30.0, "v2": 70.0}


async def test_canary_set_without_admin_key_says_which_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LLMSERVE_ADMIN_KEY", raising=False)
    assert main(["canary", "set", MODEL, "v1=50", "v2=50"]) == 2
    assert capsys.readouterr().err == "llmserve: set LLMSERVE_ADMIN_KEY to the server's admin key\n"


async def test_two_local_engines_in_one_process_serve_the_openai_sdk(tmp_path: Path) -> None:
    variants = (
        VariantConfig("v1", BUILTIN_CHAT_MODEL, 50),
        VariantConfig("v2", BUILTIN_CHAT_MODEL, 50),
    )
    config = ServerConfig(
        models=(ModelConfig(MODEL, variants=variants),),
        home=tmp_path,
        engine=EngineConfig(kv_cache_memory_mb=16, num_threads=1),
    )
    backends = build_backends(config)
    async with serve(create_app(config, backends, build_gatekeeper(config))) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
        met = set()
        for _ in range(6):
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
            met.add(raw.headers["x-llmserve-variant"])
            assert raw.parse().usage is not None
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
        )
        finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
        await client.close()
    assert met <= {"v1", "v2"} and finishes[-1] in ("length", "stop")


async def test_a_weight_of_zero_moves_every_key_to_the_other_variant(
    live: tuple[str, KeyGatekeeper],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, gatekeeper = live
    secrets = await make_keys(gatekeeper, 10)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        assert {(await variants_met(client, s, 1))[0] for s in secrets} == {"v1", "v2"}
        monkeypatch.setenv("LLMSERVE_ADMIN_KEY", ADMIN_KEY)
        argv = ["canary", "set", MODEL, "v1=0", "v2=100", "--base-url", url]
        assert await asyncio.to_thread(main, argv) == 0
        assert capsys.readouterr().out == f"{MODEL}: v1=0, v2=100\n"
        assert {v for s in secrets for v in await variants_met(client, s, 2)} == {"v2"}
        body = {"variants": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 0}]}
        refused = await client.put(
            f"/admin/models/{MODEL}/variants", json=body, headers=bearer(ADMIN_KEY)
        )
    assert refused.status_code == 400
    assert "at least one variant needs a positive weight" in refused.json()["error"]["message"]

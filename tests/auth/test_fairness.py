"""Fairness across keys: a flood from one key delays another key by at most one round."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from auth_live_server import (
    MODEL,
    FirstOutputRecorder,
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
from llmserve.auth.limits import LocalLimitState
from llmserve.auth.store import SqliteKeyStore
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, ServerConfig

DELAY_S = 0.02


async def test_flooding_key_does_not_starve_another_key(tmp_path: Path) -> None:
    backend = MeteredBackend(MODEL, reply="abcd", token_delay_s=DELAY_S, max_concurrency=4)
    config = fake_server_config(tmp_path)
    gatekeeper = build_gatekeeper(config)
    flooder, flood_secret = gatekeeper.store.create_key(KeySpec("flood", max_concurrency=200))
    single, single_secret = gatekeeper.store.create_key(KeySpec("single", max_concurrency=5))
    app = create_app(config, {MODEL: backend}, gatekeeper)
    async with serve_in_process(app) as url, http_client(url) as client:

        async def chat(secret: str) -> int:
            response = await client.post(
                "/v1/chat/completions", json=chat_body(stream=False), headers=auth(secret)
            )
            return response.status_code

        flood = [asyncio.create_task(chat(flood_secret)) for _ in range(200)]
        await wait_until(lambda: backend.load().num_waiting >= 100, 10)
        assert await chat(single_secret) == 200
        assert await asyncio.gather(*flood) == [200] * 200

    [(single_start, _, single_id)] = [s for s in backend.starts if s[1] == single.key_id]
    single_enqueued = backend.enqueued_at[single_id]
    flood_starts_between = [
        s
        for s in backend.starts
        if s[1] == flooder.key_id and single_enqueued < s[0] < single_start
    ]
    assert len(flood_starts_between) <= 1  # at most one round of the rotation ahead of it
    flood_started_after = [
        s for s in backend.starts if s[1] == flooder.key_id and s[0] > single_start
    ]
    assert len(flood_started_after) >= 50  # the flood was still queued when it was served


@pytest.mark.slow
async def test_flooding_key_does_not_starve_another_key_on_the_real_engine(
    tmp_path: Path, llmserve_home: Path, tiny_chat_path: Path
) -> None:
    home = llmserve_home  # where the session built the built-in model
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL, max_model_len=256)
    config = ServerConfig(models=(model,), home=home)
    engine = EngineConfig(max_num_seqs=2, kv_cache_memory_mb=8, num_threads=1)
    backend = FirstOutputRecorder(LocalBackend(model, engine, home))
    gatekeeper = KeyGatekeeper(
        SqliteKeyStore(tmp_path / "llmserve.db"), LocalLimitState(), config.auth
    )
    flooder, flood_secret = gatekeeper.store.create_key(KeySpec("flood", max_concurrency=100))
    single, single_secret = gatekeeper.store.create_key(KeySpec("single"))
    app = create_app(config, {MODEL: backend}, gatekeeper)
    async with serve_in_process(app) as url, http_client(url) as client:

        async def chat(secret: str) -> int:
            body = {**chat_body(stream=False), "max_tokens": 4, "temperature": 0}
            response = await client.post("/v1/chat/completions", json=body, headers=auth(secret))
            return response.status_code

        flood = [asyncio.create_task(chat(flood_secret)) for _ in range(60)]
        await wait_until(lambda: backend.load().num_waiting >= 30, 30)
        assert await chat(single_secret) == 200
        assert await asyncio.gather(*flood) == [200] * 60

    [(single_start, _, single_id)] = [s for s in backend.starts if s[1] == single.key_id]
    single_enqueued = backend.enqueued_at[single_id]
    flood_started_between = [
        s
        for s in backend.starts
        if s[1] == flooder.key_id and single_enqueued < s[0] < single_start
    ]
    # At most the 2 that were running (first output pending) plus one turn of the rotation.
    assert len(flood_started_between) <= engine.max_num_seqs + 1
    flood_started_after = [
        s for s in backend.starts if s[1] == flooder.key_id and s[0] > single_start
    ]
    assert len(flood_started_after) >= 20

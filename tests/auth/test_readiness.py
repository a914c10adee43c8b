"""/health tells the truth about Redis: 503 with the reason while it is down, 200 once it is back.

A real redis-server of the test's own is stopped and started again under a live server.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from auth_live_server import (
    MODEL,
    chat_body,
    fake_server_config,
    http_client,
    serve_in_process,
)
from redis_process import RedisProcess, free_port

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig

DEADLINE_S = 30


async def wait_for_health(client: httpx.AsyncClient, status: int) -> httpx.Response:
    """Poll /health until it answers `status` (the readiness ping is cached for a second)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        response = await client.get("/health")
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, f"/health still answers {response.status_code}"
        await asyncio.sleep(0.05)


async def test_health_is_503_while_redis_is_down_and_200_once_it_is_back(
    tmp_path: Path,
) -> None:
    redis = RedisProcess(free_port(), tmp_path / "redis")
    redis.start()
    config = fake_server_config(tmp_path, AuthConfig(limit_store=redis.url))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    try:
        async with serve_in_process(app) as url, http_client(url) as client:
            healthy = await client.get("/health")
            assert (healthy.status_code, healthy.json()["status"]) == (200, "ok")

            redis.stop()
            down = await wait_for_health(client, 503)
            assert down.json()["status"] == "unavailable"
            assert down.json()["reason"].startswith(f"cannot reach Redis at {redis.url} (")
            assert down.json()["models"] == {MODEL: {"num_running": 0, "num_waiting": 0}}
            assert down.headers["retry-after"] == "1"
            refused = await client.post("/v1/chat/completions", json=chat_body(stream=False))
            assert refused.status_code == 503  # never a 500
            assert refused.json()["error"]["code"] == "server_is_overloaded"
            assert refused.json()["error"]["message"] == (
                "The server cannot reach its rate-limit store (Redis); please retry shortly."
            )

            redis.start()
            back = await wait_for_health(client, 200)
            assert back.json()["status"] == "ok"
            answered = await client.post("/v1/chat/completions", json=chat_body(stream=False))
            assert answered.status_code == 200
    finally:
        redis.stop()

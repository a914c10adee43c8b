"""Another process holding SQLite's write lock for 5 s stalls neither /health nor a stream.

Usage is written from a thread of its own; the event loop never waits on the database's lock.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from auth_live_server import (
    MODEL,
    auth,
    chat_body,
    fake_server_config,
    http_client,
    serve_in_thread,
)

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, key_store_path
from llmserve.auth.keys import KeySpec
from llmserve.backends.fake import FakeBackend

LOCK_S = 5.0
# The bounds: /health within 1 s, no stream stall over 2 s (a blocked loop: about 5 s).
MAX_HEALTH_S = 1.0
MAX_STREAM_GAP_S = 2.0
LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


async def hold_write_lock(db: Path) -> asyncio.subprocess.Process:
    """Another process that holds the database's write lock for LOCK_S from now."""
    locker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(db), str(LOCK_S), stdout=asyncio.subprocess.PIPE
    )
    assert locker.stdout is not None
    assert await locker.stdout.readline() == b"locked\n"
    return locker


async def health_latencies_while(
    locker: asyncio.subprocess.Process, client: httpx.AsyncClient
) -> list[float]:
    """GET /health every 0.1 s until `locker` exits; the time each answer took."""
    latencies = []
    while locker.returncode is None:
        started = time.monotonic()
        assert (await client.get("/health")).status_code == 200
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.1)
    return latencies


async def stream_gaps_until(lines: AsyncIterator[str], done: asyncio.Task[object]) -> list[float]:
    """Read a stream's events until `done`; the time between each event and the one before."""
    gaps = []
    last = time.monotonic()
    while not done.done():
        line = await anext(lines)
        if line.startswith("data: "):
            assert line != "data: [DONE]"  # the stream outlasts the lock
            gaps.append(time.monotonic() - last)
            last = time.monotonic()
    return gaps


async def test_sqlite_write_lock_held_elsewhere_stalls_nothing(tmp_path: Path) -> None:
    backend = FakeBackend(MODEL, reply="x" * 1000, max_model_len=2048, token_delay_s=0.05)
    config = fake_server_config(tmp_path)
    gatekeeper = build_gatekeeper(config)
    _, secret = gatekeeper.store.create_key(KeySpec("alice"))
    short_body = {**chat_body(stream=False), "max_tokens": 2}
    with serve_in_thread(create_app(config, {MODEL: backend}, gatekeeper)) as url:
        async with (
            http_client(url) as client,
            client.stream(
                "POST", "/v1/chat/completions", json=chat_body(), headers=auth(secret)
            ) as stream,
        ):
            lines = stream.aiter_lines()
            await anext(lines)
            locker = await hold_write_lock(key_store_path(tmp_path))
            # A request that ends while the lock is held: its usage must wait, not the loop.
            short = client.post("/v1/chat/completions", json=short_body, headers=auth(secret))
            short_task = asyncio.create_task(short)
            health = asyncio.create_task(health_latencies_while(locker, client))
            gaps = await stream_gaps_until(lines, health)
            assert (await short_task).status_code == 200
        assert await locker.wait() == 0
        latencies = await health
        assert max(latencies) < MAX_HEALTH_S, latencies
        assert max(gaps) < MAX_STREAM_GAP_S, max(gaps)
        [usage] = await gatekeeper.usage("alice")  # written once the lock was released
        assert usage.requests == 2 and usage.completion_tokens >= 2

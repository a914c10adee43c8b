"""Two server processes share one key's limit through Redis; a killed one frees its slots."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from auth_live_server import MODEL, auth, http_client

from llmserve.auth.keys import KeySpec
from llmserve.auth.store import SqliteKeyStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]
LEASE_S = 1.0
SERVER = Path(__file__).parent / "auth_fake_server.py"


class ServerProcess:
    """One `auth_fake_server.py` child process."""

    def __init__(self, home: Path, state: str) -> None:
        args = [sys.executable, str(SERVER), "--home", str(home), "--state", state]
        args += ["--lease-seconds", str(LEASE_S)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port:
            raise RuntimeError(f"server did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> str:
        """Stop the process (if still running); returns everything it logged."""
        if self.process.poll() is None:
            self.process.terminate()
        out, err = self.process.communicate(timeout=10)
        return out + err


@pytest.fixture
def servers(tmp_path: Path, redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers with one key store (a shared home) and one Redis."""
    first, second = ServerProcess(tmp_path, redis_url), ServerProcess(tmp_path, redis_url)
    yield first, second
    first.stop()
    second.stop()


async def open_stream(client: httpx.AsyncClient, url: str, secret: str) -> httpx.Response:
    """Start a streamed chat and return once its status is known (the body stays open)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    request = client.build_request(
        "POST", f"{url}/v1/chat/completions", json=body, headers=auth(secret)
    )
    return await client.send(request, stream=True)


async def test_two_processes_share_a_limit_and_a_killed_one_frees_its_slots(
    tmp_path: Path, redis_url: str, servers: tuple[ServerProcess, ServerProcess]
) -> None:
    store = SqliteKeyStore(tmp_path / "llmserve.db")
    key, secret = store.create_key(KeySpec("shared", max_concurrency=4))
    store.close()
    leases = redis.Redis.from_url(redis_url)
    first, second = servers
    async with http_client(first.url) as client:
        urls = [first.url, second.url] * 6
        responses = await asyncio.gather(*(open_stream(client, url, secret) for url in urls))
        held = [r for r in responses if r.status_code == 200]
        assert len(held) == 4  # each stream runs 20 s: none ended during the burst
        assert {r.status_code for r in responses} == {200, 429}
        assert leases.zcard(f"llmserve:leases:{key.key_id}") == 4
        held_by_first = sum(1 for r in held if str(r.url).startswith(first.url))
        if held_by_first == 0:  # kill the one that holds slots
            first, second = second, first
            held_by_first = 4
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        assert (await open_stream(client, second.url, secret)).status_code == 429
        killed_at = time.monotonic()
        new: list[httpx.Response] = []
        while len(new) < held_by_first:
            response = await open_stream(client, second.url, secret)
            if response.status_code == 200:
                new.append(response)
            else:
                await response.aclose()
                await asyncio.sleep(0.05)
            assert time.monotonic() - killed_at < LEASE_S + 1.5  # lease plus polling slack
        assert (await open_stream(client, second.url, secret)).status_code == 429
        for response in responses + new:
            await response.aclose()
    leases.close()
    log = second.stop() + first.stop()
    assert secret not in log and secret[4:] not in log

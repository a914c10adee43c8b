"""PostgreSQL stopped while serving: /health is 503 with the reason within 5 s, requests get
503 `server_is_overloaded` (never a 500), and serving resumes by itself once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from postgres_process import PostgresProcess
from servers import Server

from llmserve.auth.keys import KeySpec
from llmserve.auth.postgres_store import PostgresKeyStore

pytestmark = pytest.mark.slow
DEADLINE_S = 60.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresProcess]:
    """A cluster for this test alone: it is stopped and started again."""
    server = PostgresProcess()
    server.start()
    try:
        yield server
    finally:
        server.remove()


def wait_for_status(url: str, status: int, headers: dict[str, str] | None = None) -> float:
    """Seconds until GET/POST `url` answers `status`."""
    started = time.monotonic()
    while True:
        if call(url, headers).status_code == status:
            return time.monotonic() - started
        assert time.monotonic() - started < DEADLINE_S, f"no {status} from {url}"
        time.sleep(0.05)


def call(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    if url.endswith("/chat/completions"):
        body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(url, json=body, headers=headers, timeout=30)
    return httpx.get(url, headers=headers, timeout=30)


def test_database_outage_is_503_and_serving_resumes_by_itself(
    own_postgres: PostgresProcess, tmp_path: Path
) -> None:
    url = own_postgres.create_database("outage")
    store = PostgresKeyStore(url)
    _, secret = store.create_key(KeySpec("k"))
    store.close()
    server = Server(tmp_path / "a", url)
    auth = {"Authorization": f"Bearer {secret}"}
    chat, files, health = (
        f"{server.url}/v1/chat/completions", f"{server.url}/v1/files", f"{server.url}/health"
    )  # fmt: skip
    try:
        assert call(chat, auth).status_code == 200
        assert call(health).status_code == 200
        own_postgres.stop()
        assert wait_for_status(health, 503) < 5.0
        body = call(health).json()
        assert body["status"] == "unavailable"
        assert "cannot reach PostgreSQL" in body["reason"]
        for answer in (call(chat, auth), call(files, auth)):
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "server_is_overloaded"
        own_postgres.start()
        wait_for_status(chat, 200, auth)
        assert call(health).status_code == 200
        assert call(files, auth).status_code == 200
    finally:
        server.kill()
    log = server.log.read_text()
    assert "status=500" not in log
    assert "background runner paused" in log  # the job runners waited, and went on

"""`kill -9` mid-stream loses no request from the usage table (a real server process).

Usage is written at admission (the request and its prompt tokens) and about once a second as the
stream runs (the tokens sent so far), so a process that dies without any cleanup still counted it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from auth_live_server import MODEL, auth

from llmserve.auth.keys import KeySpec
from llmserve.auth.store import SqliteKeyStore, UsageRow

pytestmark = pytest.mark.slow
SERVER = Path(__file__).parent / "auth_fake_server.py"
MAX_TOKENS = 300  # 15 s at the fake server's 50 ms a token: far longer than the test
DEADLINE_S = 30
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A fake-model server process with its keys in `tmp_path`, and its URL."""
    args = [sys.executable, str(SERVER), "--home", str(tmp_path), "--state", "in-process"]
    with subprocess.Popen(
        [*args, "--lease-seconds", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        try:
            assert port, "the server did not start"
            yield process, f"http://127.0.0.1:{port}"
        finally:
            process.kill()


def usage_of(home: Path, name: str) -> list[UsageRow]:
    """The usage rows of key `name`, read from the SQLite file as `llmserve keys usage` does."""
    store = SqliteKeyStore(home / "llmserve.db")
    try:
        return store.usage(name)
    finally:
        store.close()


def wait_for_completion_tokens(home: Path, name: str) -> None:
    """Until the key's usage counts some completion tokens of the stream still running."""
    deadline = time.monotonic() + DEADLINE_S
    while not any(row.completion_tokens for row in usage_of(home, name)):
        assert time.monotonic() < deadline, "no completion tokens were written"
        time.sleep(0.05)


def test_kill_9_mid_stream_keeps_the_request_in_usage(
    tmp_path: Path, server: tuple[subprocess.Popen[str], str]
) -> None:
    process, url = server
    store = SqliteKeyStore(tmp_path / "llmserve.db")
    _, alice = store.create_key(KeySpec("alice"))
    _, probe = store.create_key(KeySpec("probe"))
    store.close()
    with httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        short = client.post(
            "/v1/chat/completions", json={**BODY, "max_tokens": 1}, headers=auth(probe)
        )
        prompt_tokens = short.json()["usage"]["prompt_tokens"]
        stream_body = {**BODY, "stream": True}
        with client.stream(
            "POST", "/v1/chat/completions", json=stream_body, headers=auth(alice)
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")  # streaming: admitted and running
            wait_for_completion_tokens(tmp_path, "alice")
            process.kill()  # SIGKILL: no finally, no shutdown, no flush
            assert process.wait(timeout=DEADLINE_S) == -9
    [row] = usage_of(tmp_path, "alice")
    assert (row.requests, row.prompt_tokens, row.errors) == (1, prompt_tokens, 0)
    assert 0 < row.completion_tokens < MAX_TOKENS

"""Two `llmserve serve` processes with their own homes and one PostgreSQL database (and one
Redis for limits) are one service: keys, usage, files, batches and stored responses."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from servers import ADMIN_KEY, Server

pytestmark = [pytest.mark.slow, pytest.mark.redis]
DEADLINE_S = 90.0
T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, deadline_s: float = DEADLINE_S) -> T:
    deadline = time.monotonic() + deadline_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return result


@pytest.fixture
def start(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Callable[[str], Server]]:
    """Starts servers named by the caller, each with its own home; all are stopped at the end."""
    started: list[Server] = []

    def start_server(name: str) -> Server:
        started.append(Server(tmp_path / name, database_url, redis_url))
        return started[-1]

    yield start_server
    for server in started:
        server.kill()


def chat(url: str, secret: str) -> httpx.Response:
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def keys_cli(database_url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`llmserve keys … --database …`, as an operator runs it (in a home of its own)."""
    command = [sys.executable, "-m", "llmserve", "keys", *args, "--database", database_url]
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def keys_usage(database_url: str, home: Path) -> list[dict[str, Any]]:
    """`llmserve keys usage --json`: one row per key and model, ordered by key name."""
    done = keys_cli(database_url, home, "usage", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_key_made_on_one_server_works_on_the_other_and_revocation_reaches_it_within_a_second(
    start: Callable[[str], Server], database_url: str, tmp_path: Path
) -> None:
    a, b = start("a"), start("b")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(f"{a.url}/admin/keys", json={"name": "team"}, headers=admin, timeout=30)
    assert created.status_code == 201
    secret = created.json()["key"]
    assert chat(b.url, secret).status_code == 200  # at once, on the other server
    answers = [chat(url, secret) for url in [a.url] * 3 + [b.url] * 4]
    assert [r.status_code for r in answers] == [200] * 7
    revoked = httpx.delete(f"{a.url}/admin/keys/team", headers=admin, timeout=30)
    assert revoked.status_code == 200
    revoked_at = time.monotonic()
    refused = wait_until(lambda: (r := chat(b.url, secret)).status_code == 401 and r, "401 on B")
    assert time.monotonic() - revoked_at < 1.0
    assert "revoked" in refused.json()["error"]["message"]
    other = httpx.post(f"{a.url}/admin/keys", json={"name": "other"}, headers=admin, timeout=30)
    other_secret = other.json()["key"]
    assert chat(b.url, other_secret).status_code == 200
    revoke = keys_cli(database_url, tmp_path / "cli-home", "revoke", "other")
    assert revoke.returncode == 0, revoke.stderr  # `llmserve keys revoke` on the same database
    assert chat(a.url, other_secret).status_code == 401
    a.stop()
    b.stop()  # both wrote their usage on the way out
    name_to_row = {row["key_name"]: row for row in keys_usage(database_url, tmp_path / "cli-home")}
    row = name_to_row["team"]
    usages = [r.json()["usage"] for r in [*answers]]
    assert name_to_row["other"]["requests"] == 1
    assert row["requests"] == 8  # the first request on B and the seven after it
    first = usages[0]  # the fake model answers the same prompt with the same tokens
    assert row["prompt_tokens"] == 8 * first["prompt_tokens"]
    assert row["completion_tokens"] == 8 * first["completion_tokens"]
    assert all(u == first for u in usages)


def test_files_batches_and_responses_move_between_servers(
    start: Callable[[str], Server], database_url: str
) -> None:
    from llmserve.auth.keys import KeySpec
    from llmserve.auth.postgres_store import PostgresKeyStore

    store = PostgresKeyStore(database_url)
    _, secret = store.create_key(KeySpec("jobs"))
    store.close()
    a = start("a")
    sdk_a = openai.OpenAI(base_url=f"{a.url}/v1", api_key=secret, max_retries=0)
    num_lines = 120
    lines = [
        {"custom_id": f"k-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "slow-chat", "messages": [{"role": "user", "content": f"hi {i}"}]}}
        for i in range(num_lines)
    ]  # fmt: skip
    content = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    uploaded = sdk_a.files.create(file=("batch.jsonl", content), purpose="batch")
    stored = sdk_a.responses.create(model="fake-chat", input="Remember me.")
    batch = sdk_a.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    kill_after = random.randint(5, 40)
    wait_until(lambda: done_count(sdk_a, batch.id) >= kill_after, "A to run some lines")
    b = start("b")  # started after A took the batch: B can only get it when A's lease lapses
    sdk_b = openai.OpenAI(base_url=f"{b.url}/v1", api_key=secret, max_retries=0)
    assert sdk_b.files.content(uploaded.id).content == content
    a.kill()
    assert done_count(sdk_b, batch.id) < num_lines  # A really died mid-run
    final = wait_until(
        lambda: (found := sdk_b.batches.retrieve(batch.id)).status == "completed" and found,
        "B to finish the batch",
    )
    outputs = [
        json.loads(line)
        for line in sdk_b.files.content(str(final.output_file_id)).text.splitlines()
    ]
    assert sorted(o["custom_id"] for o in outputs) == sorted(f"k-{i}" for i in range(num_lines))
    assert final.request_counts is not None
    assert (final.request_counts.completed, final.request_counts.failed) == (num_lines, 0)
    follow_up = sdk_b.responses.create(
        model="fake-chat", input="And now?", previous_response_id=stored.id
    )
    assert follow_up.status == "completed"
    assert sdk_b.responses.retrieve(stored.id).output_text == stored.output_text


def done_count(sdk: openai.OpenAI, batch_id: str) -> int:
    counts = sdk.batches.retrieve(batch_id).request_counts
    return 0 if counts is None else counts.completed + counts.failed

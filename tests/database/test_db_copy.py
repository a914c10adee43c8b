"""`llmserve db copy --to postgresql://…` moves a SQLite home into PostgreSQL: its keys keep
working, its usage, files, batches and stored responses are there after the copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from servers import Server

from llmserve.auth.factory import open_key_store
from llmserve.auth.keys import KeySpec

pytestmark = pytest.mark.slow


def llmserve(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    command = [sys.executable, "-m", "llmserve", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def wait_for_batch(sdk: openai.OpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + 90
    while (batch := sdk.batches.retrieve(batch_id)).status != "completed":
        assert time.monotonic() < deadline, "the batch did not complete"
        time.sleep(0.05)
    return batch


def test_db_copy_moves_a_sqlite_home_into_postgres(tmp_path: Path, database_url: str) -> None:
    old_home = tmp_path / "old" / "home"
    store = open_key_store(old_home)
    _, secret = store.create_key(KeySpec("moving", rpm=600))
    store.close()
    old = Server(tmp_path / "old", None)  # SQLite in its home
    try:
        sdk = openai.OpenAI(base_url=f"{old.url}/v1", api_key=secret, max_retries=0)
        chat = sdk.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hi"}]
        )
        lines = [
            {"custom_id": f"c-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "fake-chat", "messages": [{"role": "user", "content": str(i)}]}}
            for i in range(5)
        ]  # fmt: skip
        content = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        uploaded = sdk.files.create(file=("in.jsonl", content), purpose="batch")
        batch = sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        finished = wait_for_batch(sdk, batch.id)
        output = sdk.files.content(str(finished.output_file_id)).content
        stored = sdk.responses.create(model="fake-chat", input="Remember me.")
    finally:
        old.stop()
    copied = llmserve("db", "copy", "--home", str(old_home), "--to", database_url, home=old_home)
    assert copied.returncode == 0, copied.stderr
    assert "  api_keys: 1" in copied.stdout
    assert "  batches: 1" in copied.stdout
    assert database_url.split("@")[0].split(":")[-1] not in copied.stdout  # no password
    new = Server(tmp_path / "new", database_url)
    try:
        sdk = openai.OpenAI(base_url=f"{new.url}/v1", api_key=secret, max_retries=0)
        assert sdk.models.list().data  # the key works on a server that never saw the home
        again = sdk.batches.retrieve(batch.id)
        assert again.status == "completed"
        assert again.request_counts == finished.request_counts
        assert sdk.files.content(str(again.output_file_id)).content == output
        assert sdk.files.content(uploaded.id).content == content
        follow_up = sdk.responses.create(
            model="fake-chat", input="And now?", previous_response_id=stored.id
        )
        assert follow_up.status == "completed"
    finally:
        new.stop()
    usage = llmserve("keys", "usage", "--json", "--database", database_url, home=tmp_path)
    (row,) = json.loads(usage.stdout)
    assert chat.usage is not None
    # the chat, the stored response and five batch lines before the copy; one response after
    assert row["key_name"] == "moving"
    assert row["requests"] == 1 + 1 + 5 + 1
    again_copy = llmserve(
        "db", "copy", "--home", str(old_home), "--to", database_url, home=old_home
    )
    assert again_copy.returncode == 2
    assert "already holds api_keys: copy into an empty database" in again_copy.stderr

"""Issue 18, done-when 5: storage has limits, on a real server process.

A key made with `llmserve keys create --max-storage-mb 10` stores 8 MB and gets a 400 naming
the quota for the next 8 MB (nothing of it stored); a file uploaded with `expires_after` has
`expires_at` and is gone (404, its contents off the disk) once that time has passed.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from server_process import serve, write_config

pytestmark = pytest.mark.slow
DEADLINE_S = 60.0
SETTINGS = """
models:
  - {name: crawl-chat, source: fake, backend: fake}
jobs:
  min_file_expiry_s: 1
  sweep_interval_s: 0.2
"""


def keys_create(home: Path, *args: str) -> str:
    """`llmserve keys create` in `home`; the secret it prints."""
    command = [sys.executable, "-m", "llmserve", "keys", "create", "--home", str(home), *args]
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def upload(sdk: openai.OpenAI, num_bytes: int, **options: object) -> str:
    content = io.BytesIO(b"x" * num_bytes)
    return sdk.files.create(file=("data.bin", content), purpose="user_data", **options).id  # type: ignore[arg-type]


def test_storage_quota_and_file_expiry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = keys_create(home, "--name", "small", "--max-storage-mb", "10")
    listed = subprocess.run(
        [sys.executable, "-m", "llmserve", "keys", "list", "--home", str(home), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert '"max_storage_mb": 10' in listed
    with serve(write_config(tmp_path, SETTINGS)) as (_, base_url):
        sdk = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0)
        first = upload(sdk, 8 * 2**20)
        with pytest.raises(openai.BadRequestError) as refused:
            upload(sdk, 8 * 2**20)
        assert refused.value.status_code == 400
        message = refused.value.body["message"]  # type: ignore[index]
        assert "storage quota of 10 MB" in message, message
        assert [f.id for f in sdk.files.list()] == [first]  # nothing of the refused one kept
        stored = sorted(p.name for p in (home / "files").iterdir())
        assert stored == [first]
        sdk.files.delete(first)
        expiring = sdk.files.create(
            file=("soon.txt", io.BytesIO(b"soon")),
            purpose="user_data",
            expires_after={"anchor": "created_at", "seconds": 2},
        )
        assert expiring.expires_at == expiring.created_at + 2
        assert sdk.files.retrieve(expiring.id).expires_at == expiring.expires_at
        deadline = time.monotonic() + DEADLINE_S
        while (home / "files" / expiring.id).exists():  # the sweeper deletes the contents
            assert time.monotonic() < deadline, "the expired file stayed on disk"
            time.sleep(0.1)
        assert time.time() >= expiring.expires_at
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve(expiring.id)
        with pytest.raises(openai.NotFoundError):
            sdk.files.content(expiring.id)


def test_expires_after_outside_the_allowed_range_is_a_400(tmp_path: Path) -> None:
    with serve(write_config(tmp_path, SETTINGS)) as (_, base_url):
        sdk = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            upload(sdk, 10, expires_after={"anchor": "created_at", "seconds": 10**9})
        assert refused.value.body["param"] == "expires_after.seconds"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as wrong_anchor:
            upload(sdk, 10, expires_after={"anchor": "last_active_at", "seconds": 5})
        assert wrong_anchor.value.body["param"] == "expires_after.anchor"  # type: ignore[index]


EVENTS = """
models:
  - {name: crawl-chat, source: fake, backend: fake, fake_token_delay_s: 0.001}
jobs:
  response_ttl_days: 0.0001  # 8.64 s
  sweep_interval_s: 0.2
"""


def event_rows(home: Path, response_id: str) -> int:
    with sqlite3.connect(home / "jobs.db", timeout=30) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM response_events WHERE response_id = ?", (response_id,)
        ).fetchone()
    return int(row[0])


def test_background_events_are_stored_compactly_and_responses_expire(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with serve(write_config(tmp_path, EVENTS)) as (_, base_url):
        sdk = openai.OpenAI(base_url=base_url, api_key="open", max_retries=0)
        created = sdk.responses.create(model="crawl-chat", input="hi", background=True)
        deadline = time.monotonic() + DEADLINE_S
        while sdk.responses.retrieve(created.id).status in ("queued", "in_progress"):
            assert time.monotonic() < deadline, "the background response did not finish"
            time.sleep(0.1)
        replayed = list(sdk.responses.retrieve(created.id, stream=True))
        numbers = [event.sequence_number for event in replayed]
        assert numbers == list(range(len(numbers))) and len(numbers) > 10
        later = list(sdk.responses.retrieve(created.id, stream=True, starting_after=5))
        assert [event.sequence_number for event in later] == numbers[6:]
        assert event_rows(home, created.id) * 4 <= len(numbers)  # not one row per delta
        while True:  # jobs.response_ttl_days later the sweeper deletes it, events and all
            try:
                sdk.responses.retrieve(created.id)
            except openai.NotFoundError:
                break
            assert time.monotonic() < deadline + 30, "the old response was never deleted"
            time.sleep(0.2)
        assert event_rows(home, created.id) == 0
        assert time.time() >= created.created_at + 0.0001 * 86_400

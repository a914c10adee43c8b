"""Issue 18, done-when 7: jobs are under the same rules as requests, on real server processes.

Revoking a key (`llmserve keys revoke`, another process) ends its running batch and its background
response, and no more lines are done 5 s after; lines whose `max_tokens` sum past 2^63 and a line
with a negative `max_tokens` are those lines' 400s, never a 500; a negative `max_tokens` never
lowers the batch's token estimate below `jobs.max_enqueued_tokens_per_key`; a batch line over
`limits.max_request_body_mb` fails the batch with `line_too_large`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from server_process import serve, write_config

pytestmark = pytest.mark.slow
T = TypeVar("T")
DEADLINE_S = 90.0
ADMIN_KEY = "admin-secret-for-job-rules"
ENDED = ("completed", "failed", "expired", "cancelled")
SLOW = """
models:
  - {name: crawl-chat, source: fake, backend: fake, fake_token_delay_s: 0.05}
  - {name: slow-chat, source: fake, backend: fake, fake_token_delay_s: 1.0}
jobs:
  max_concurrent_lines: 2
  lease_s: 3.0
"""


def drain(process: subprocess.Popen[str]) -> None:
    """Read the server's stdout (its access log) away, so that it never blocks on a full pipe."""
    assert process.stdout is not None
    threading.Thread(target=process.stdout.read, daemon=True).start()


def wait_until(check: Callable[[], T], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def keys(home: Path, *args: str) -> str:
    """`llmserve keys ...` in `home` (another process, as an operator runs it); its stdout."""
    command = [sys.executable, "-m", "llmserve", "keys", *args, "--home", str(home)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def line(custom_id: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": f"hello {custom_id}"}]
    body = {"model": "crawl-chat", "messages": messages, "max_tokens": 5, **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def create_batch(sdk: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    content = b"".join(json.dumps(item).encode() + b"\n" for item in lines)
    uploaded = sdk.files.create(file=("batch.jsonl", io.BytesIO(content)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id


def completed(sdk: openai.OpenAI, batch_id: str) -> int:
    counts = sdk.batches.retrieve(batch_id).request_counts
    return 0 if counts is None else counts.completed + counts.failed


def test_revoking_a_key_ends_its_batch_and_background_response(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret = keys(home, "create", "--name", "doomed")
    os.environ["LLMSERVE_ADMIN_KEY"] = ADMIN_KEY  # the server inherits it: the admin reads jobs
    try:
        with serve(write_config(tmp_path, SLOW)) as (process, base_url):
            drain(process)
            user = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0)
            admin = openai.OpenAI(base_url=base_url, api_key=ADMIN_KEY, max_retries=0)
            batch_id = create_batch(user, [line(f"l-{i}") for i in range(400)])
            response = user.responses.create(
                model="slow-chat", input="long", background=True, max_output_tokens=2000
            )
            wait_until(lambda: completed(admin, batch_id) >= 4, "lines to be done")
            assert admin.batches.retrieve(batch_id).status == "in_progress"
            assert admin.responses.retrieve(response.id).status in ("queued", "in_progress")
            keys(home, "revoke", "doomed")
            revoked_at = time.monotonic()
            ended = wait_until(
                lambda: (b := admin.batches.retrieve(batch_id)).status in ENDED and b,
                "the batch to end",
            )
            assert ended.status in ("cancelled", "failed")
            background = wait_until(
                lambda: (r := admin.responses.retrieve(response.id)).status in ENDED and r,
                "the background response to end",
            )
            assert background.status in ("cancelled", "failed")
            time.sleep(max(0.0, revoked_at + 5.0 - time.monotonic()))
            done_at_5s = completed(admin, batch_id)
            time.sleep(3.0)  # a runner still going would do ≥ 100 lines in this time
            assert completed(admin, batch_id) == done_at_5s < 400
            with pytest.raises(openai.AuthenticationError):
                user.batches.list()
            assert process.poll() is None
    finally:
        del os.environ["LLMSERVE_ADMIN_KEY"]


def error_lines(sdk: openai.OpenAI, file_id: str | None) -> dict[str, Any]:
    text = sdk.files.content(file_id).text if file_id else ""
    return {item["custom_id"]: item["response"] for item in map(json.loads, text.splitlines())}


def test_huge_and_negative_max_tokens_are_their_lines_400s(tmp_path: Path) -> None:
    fast = "models:\n  - {name: crawl-chat, source: fake, backend: fake}\n"
    lines = [line("ok-0"), line("huge-0", max_tokens=2**62 + 1), line("huge-1", max_tokens=2**62)]
    lines += [line("negative", max_tokens=-1_000_000_000), line("ok-1")]
    with serve(write_config(tmp_path, fast)) as (process, base_url):
        drain(process)
        sdk = openai.OpenAI(base_url=base_url, api_key="open", max_retries=0)
        batch_id = create_batch(sdk, lines)  # no 500: the estimate fits SQLite's integers
        batch = wait_until(
            lambda: (b := sdk.batches.retrieve(batch_id)).status in ENDED and b, "the batch"
        )
        errors = error_lines(sdk, batch.error_file_id)
        assert process.poll() is None
    assert batch.status == "completed"
    assert sorted(errors) == ["huge-0", "huge-1", "negative"]
    assert {response["status_code"] for response in errors.values()} == {400}
    assert batch.request_counts is not None and batch.request_counts.completed == 2


def test_negative_max_tokens_never_lowers_the_estimate_and_long_lines_fail(
    tmp_path: Path,
) -> None:
    limited = (
        "models:\n  - {name: crawl-chat, source: fake, backend: fake}\n"
        "jobs:\n  max_enqueued_tokens_per_key: 1000\n"
        "limits:\n  max_request_body_mb: 1\n"
    )
    with serve(write_config(tmp_path, limited)) as (process, base_url):
        drain(process)
        sdk = openai.OpenAI(base_url=base_url, api_key="open", max_retries=0)
        with pytest.raises(openai.RateLimitError) as over:
            create_batch(sdk, [line("big", max_tokens=900), line("neg", max_tokens=-(10**9))])
        assert "max_enqueued_tokens_per_key" in over.value.body["message"]  # type: ignore[index]
        long_line = line("long", messages=[{"role": "user", "content": "x" * (2 * 2**20)}])
        batch_id = create_batch(sdk, [line("ok"), long_line])
        batch = wait_until(
            lambda: (b := sdk.batches.retrieve(batch_id)).status in ENDED and b, "the batch"
        )
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    found = [(e.code, e.line) for e in batch.errors.data]
    assert found == [("line_too_large", 2)]
    assert "max_request_body_mb" in str(batch.errors.data[0].message)


def test_job_routes_answer_503_while_draining(tmp_path: Path) -> None:
    settings = SLOW + "shutdown_timeout_s: 120\n"
    with serve(write_config(tmp_path, settings)) as (process, base_url):
        drain(process)
        first_token = threading.Event()

        def stream_chat() -> None:  # a stream in flight: the server drains rather than stops
            body = {"model": "slow-chat", "messages": [{"role": "user", "content": "hi"}],
                    "stream": True, "max_tokens": 100}  # fmt: skip
            with (
                contextlib.suppress(httpx.HTTPError),  # cut when the test kills the server
                httpx.Client(timeout=60) as client,
                client.stream("POST", base_url + "/chat/completions", json=body) as response,
            ):
                for _ in response.iter_lines():
                    first_token.set()

        streaming = threading.Thread(target=stream_chat)
        streaming.start()
        assert first_token.wait(60)
        answers = draining_answers(process, base_url)
        process.kill()
        streaming.join(60)
    assert [answer.status_code for answer in answers] == [503] * 3
    assert answers[0].json()["error"]["message"] == answers[1].json()["error"]["message"]


def draining_answers(process: subprocess.Popen[str], base_url: str) -> list[httpx.Response]:
    """SIGTERM; once chat answers 503, an upload, a batch and a background response."""
    process.send_signal(signal.SIGTERM)
    chat = {"model": "crawl-chat", "messages": [{"role": "user", "content": "hi"}]}
    wait_until(
        lambda: httpx.post(base_url + "/chat/completions", json=chat).status_code == 503,
        "the drain to begin",
    )
    upload = httpx.post(
        base_url + "/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"}
    )
    batch = httpx.post(
        base_url + "/batches",
        json={"input_file_id": "file-x", "endpoint": "/v1/chat/completions",
              "completion_window": "24h"},
    )  # fmt: skip
    background = httpx.post(
        base_url + "/responses", json={"model": "crawl-chat", "input": "hi", "background": True}
    )
    return [upload, batch, background]


def test_list_cursors_resolve_only_the_callers_own_ids(tmp_path: Path) -> None:
    home = tmp_path / "home"
    mine, theirs = keys(home, "create", "--name", "mine"), keys(home, "create", "--name", "theirs")
    fast = "models:\n  - {name: crawl-chat, source: fake, backend: fake}\n"
    with serve(write_config(tmp_path, fast)) as (process, base_url):
        drain(process)
        me = openai.OpenAI(base_url=base_url, api_key=mine, max_retries=0)
        other = openai.OpenAI(base_url=base_url, api_key=theirs, max_retries=0)
        purpose = "user_data"
        older = me.files.create(file=("a.txt", io.BytesIO(b"a")), purpose=purpose).id
        foreign = other.files.create(file=("b.txt", io.BytesIO(b"b")), purpose=purpose).id
        me.files.create(file=("c.txt", io.BytesIO(b"c")), purpose=purpose)
        page = httpx.get(base_url + "/files", params={"after": foreign},
                         headers={"Authorization": f"Bearer {mine}"}).json()  # fmt: skip
        unknown = httpx.get(base_url + "/files", params={"after": "file-unknown"},
                            headers={"Authorization": f"Bearer {mine}"}).json()  # fmt: skip
        own = httpx.get(base_url + "/files", params={"after": older},
                        headers={"Authorization": f"Bearer {mine}"}).json()  # fmt: skip
    assert page == unknown
    assert page["data"] == [] and own["data"] == []

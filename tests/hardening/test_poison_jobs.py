"""Issue 18, done-when 2: a batch line cannot put the server into a crash loop.

A line carrying the deep schema ends in the error file and the rest are done, the server alive.
And the quarantine itself: a line during which the process is SIGKILLed twice is failed with an
error saying so when a third process takes the batch up, never run a third time; so is a queued
background response that two deaths left behind.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from deep_grammars import ref_chain_schema
from server_process import serve, write_config

from llmserve.auth.base import ANONYMOUS_KEY_ID
from llmserve.jobs.sqlite_store import SqliteJobStore
from llmserve.jobs.store import ResponseRecord
from llmserve.serving.response_objects import response_object
from llmserve.serving.schemas_responses import ResponseCreateRequest

pytestmark = pytest.mark.slow
T = TypeVar("T")
DEADLINE_S = 90.0
POISON_LINE = 2  # line numbers count from 1
FAKE_MODELS = """
models:
  - {name: crawl-chat, source: fake, backend: fake, fake_token_delay_s: 0.5}
jobs:
  lease_s: 1.0
"""


def wait_until(check: Callable[[], T], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def line(custom_id: str, model: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": f"hello {custom_id}"}]
    body = {"model": model, "messages": messages, "max_tokens": 5, **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def create_batch(sdk: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    content = b"".join(json.dumps(item).encode() + b"\n" for item in lines)
    uploaded = sdk.files.create(file=("batch.jsonl", io.BytesIO(content)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id


def finished(sdk: openai.OpenAI, batch_id: str) -> Any:
    batch = sdk.batches.retrieve(batch_id)
    return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None


def num_completed(sdk: openai.OpenAI, batch_id: str) -> int:
    counts = sdk.batches.retrieve(batch_id).request_counts
    return 0 if counts is None else counts.completed


def by_custom_id(sdk: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    text = sdk.files.content(file_id).text
    return {item["custom_id"]: item for item in map(json.loads, text.splitlines())}


def test_a_batch_line_with_the_deep_schema_fails_alone_and_the_server_lives(
    tmp_path: Path,
) -> None:
    deep = {
        "type": "json_schema",
        "json_schema": {"name": "deep", "schema": ref_chain_schema(1000)},
    }
    lines = [line(f"ok-{i}", "tiny") for i in range(3)]
    lines.insert(1, line("deep", "tiny", response_format=deep))
    with (
        serve(write_config(tmp_path)) as (process, base_url),
        openai.OpenAI(base_url=base_url, api_key="open", max_retries=0) as sdk,
    ):
        batch_id = create_batch(sdk, lines)
        batch = wait_until(lambda: finished(sdk, batch_id), "the batch to finish")
        assert process.poll() is None, "the server died"
        outputs = by_custom_id(sdk, batch.output_file_id)
        errors = by_custom_id(sdk, batch.error_file_id)
    assert batch.status == "completed"
    assert sorted(outputs) == ["ok-0", "ok-1", "ok-2"]
    assert list(errors) == ["deep"]
    response = errors["deep"]["response"]
    assert response["status_code"] == 400
    assert response["body"]["error"]["param"] == "response_format"
    assert "too deeply nested" in response["body"]["error"]["message"]


def attempts_of(home: Path, batch_id: str, line_no: int) -> int:
    """How often the store says the line was started (read as another process would)."""
    with sqlite3.connect(home / "jobs.db", timeout=30) as db:
        row = db.execute(
            "SELECT attempts FROM job_attempts WHERE job_id = ? AND part = ?", (batch_id, line_no)
        ).fetchone()
    return 0 if row is None else int(row[0])


def kill_during_poison(config: Path, batch_id: str | None, attempt: int) -> str:
    """Serve (creating the batch first time) until the poison line's start `attempt`; SIGKILL."""
    lines = [
        line("ok-0", "crawl-chat", max_tokens=2),
        line("poison", "crawl-chat", max_tokens=1000),  # 500 s: always running at the kill
        line("ok-2", "crawl-chat", max_tokens=2),
    ]
    home = config.parent / "home"
    with serve(config) as (process, base_url):
        with openai.OpenAI(base_url=base_url, api_key="open", max_retries=0) as sdk:
            created = batch_id or create_batch(sdk, lines)
            wait_until(lambda: num_completed(sdk, created) == 2, "the good lines to finish")
        wait_until(lambda: attempts_of(home, created, POISON_LINE) == attempt, f"start {attempt}")
        assert process.poll() is None
        process.kill()  # SIGKILL while the poison line runs: no cleanup at all
        process.wait(timeout=30)
    return created


def test_a_line_the_process_died_during_twice_is_failed_not_run_a_third_time(
    tmp_path: Path,
) -> None:
    config, home = write_config(tmp_path, FAKE_MODELS), tmp_path / "home"
    batch_id = kill_during_poison(config, None, 1)
    kill_during_poison(config, batch_id, 2)
    with serve(config) as (process, base_url):
        with openai.OpenAI(base_url=base_url, api_key="open", max_retries=0) as sdk:
            batch = wait_until(lambda: finished(sdk, batch_id), "the batch to finish")
            outputs = by_custom_id(sdk, batch.output_file_id)
            errors = by_custom_id(sdk, batch.error_file_id)
        assert process.poll() is None
    # the third start was counted, then refused: never run
    assert attempts_of(home, batch_id, POISON_LINE) == 3
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
    assert sorted(outputs) == ["ok-0", "ok-2"]
    error = errors["poison"]["error"]
    assert error["code"] == "server_died"
    assert "died twice while running this request" in error["message"]
    assert errors["poison"]["response"] is None


def test_a_queued_background_response_that_died_twice_is_failed_not_run(tmp_path: Path) -> None:
    """Seeded as two deaths leave it: still `queued`, two starts counted in the store."""
    config, home = write_config(tmp_path, FAKE_MODELS), tmp_path / "home"
    body = ResponseCreateRequest.model_validate(
        {"model": "crawl-chat", "input": "hi", "background": True}
    )
    queued = dict(response_object("resp_poison", body, status="queued", output=[], usage_body=None))
    store = SqliteJobStore(home / "jobs.db")
    try:
        request = {"body": body.model_dump(mode="json", exclude_unset=True)}
        store.put_response(
            ResponseRecord("resp_poison", ANONYMOUS_KEY_ID, "queued", queued, request, True)
        )
        assert [store.start_attempt("resp_poison", 0) for _ in range(2)] == [1, 2]
    finally:
        store.close()
    with (
        serve(config) as (process, base_url),
        openai.OpenAI(base_url=base_url, api_key="open", max_retries=0) as sdk,
    ):
        failed = wait_until(
            lambda: (r := sdk.responses.retrieve("resp_poison")).status == "failed" and r,
            "the response to be failed",
        )
        assert process.poll() is None
    assert failed.error is not None
    assert failed.error.code == "server_died"
    assert "died twice while running this request" in failed.error.message
    assert attempts_of(home, "resp_poison", 0) == 3

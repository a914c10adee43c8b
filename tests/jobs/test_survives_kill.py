"""`kill -9` of a real `llmserve serve` process mid-batch, then a restart: the batch resumes.

Every custom_id appears exactly once in the output, `request_counts` and `usage` are exact. A
background response running at the kill ends `failed` with an error that says why; stored
responses survive and `previous_response_id` still continues them.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest
from jobs_helpers import as_upload, chat_line, jsonl, parse_jsonl, wait_until

pytestmark = pytest.mark.slow
NUM_LINES = 200
CONFIG = """
home: {home}
models:
  - {{name: fake-chat, source: fake, backend: fake, fake_token_delay_s: 0.01}}
  - {{name: slow-chat, source: fake, backend: fake, fake_token_delay_s: 0.5}}
jobs:
  lease_s: 1.0
"""


@contextmanager
def serve(config: Path) -> Iterator[tuple[subprocess.Popen[str], openai.OpenAI]]:
    """A `llmserve serve --config` process on a free port, and a client of it."""
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config), "--port", "0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ
    ) as process:
        assert process.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", process.stdout.readline())
        assert match, "the server did not start"
        try:
            with openai.OpenAI(base_url=match.group(1), api_key="x", max_retries=0) as sdk:
                yield process, sdk
        finally:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "llmserve.yaml"
    path.write_text(CONFIG.format(home=tmp_path / "home"), encoding="utf-8")
    return path


def test_batch_resumes_after_kill_9_with_every_line_exactly_once(config: Path) -> None:
    kill_after = random.randint(10, NUM_LINES - 50)
    lines = [chat_line(f"k-{i}", model="fake-chat") for i in range(NUM_LINES)]
    with serve(config) as (process, sdk):
        uploaded = sdk.files.create(file=as_upload(jsonl(lines)), purpose="batch")
        batch = sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        wait_until(lambda: done_count(sdk, batch.id) >= kill_after, f"{kill_after} lines to finish")
        process.kill()  # SIGKILL: no cleanup at all
        process.wait(timeout=30)
    with serve(config) as (_, sdk):
        assert done_count(sdk, batch.id) < NUM_LINES  # it really was killed mid-run
        final = wait_until(
            lambda: (b := sdk.batches.retrieve(batch.id)).status == "completed" and b,
            "the batch to complete after the restart",
            deadline_s=120,
        )
        outputs = parse_jsonl(sdk.files.content(str(final.output_file_id)).text)
    assert final.request_counts is not None
    assert (final.request_counts.total, final.request_counts.completed) == (NUM_LINES, NUM_LINES)
    assert final.request_counts.failed == 0
    assert final.error_file_id is None
    assert sorted(o["custom_id"] for o in outputs) == sorted(f"k-{i}" for i in range(NUM_LINES))
    usages = [o["response"]["body"]["usage"] for o in outputs]
    assert final.usage is not None
    assert final.usage.input_tokens == sum(u["prompt_tokens"] for u in usages)
    assert final.usage.output_tokens == sum(u["completion_tokens"] for u in usages)


def done_count(sdk: openai.OpenAI, batch_id: str) -> int:
    counts = sdk.batches.retrieve(batch_id).request_counts
    return 0 if counts is None else counts.completed + counts.failed


def test_background_response_running_at_kill_ends_failed_clearly(config: Path) -> None:
    with serve(config) as (process, sdk):
        stored = sdk.responses.create(model="fake-chat", input="Remember me.")
        running = sdk.responses.create(model="slow-chat", input="hi", background=True)
        wait_until(
            lambda: sdk.responses.retrieve(running.id).status == "in_progress",
            "the background response to run",
        )
        process.kill()
        process.wait(timeout=30)
    with serve(config) as (_, sdk):
        failed = wait_until(
            lambda: (r := sdk.responses.retrieve(running.id)).status == "failed" and r,
            "the interrupted response to end",
        )
        assert failed.error is not None
        assert "restarted while this background response was running" in failed.error.message
        events = list(sdk.responses.retrieve(running.id, stream=True))
        assert events[-1].type == "response.failed"
        assert sdk.responses.retrieve(stored.id).output_text == stored.output_text
        follow_up = sdk.responses.create(
            model="fake-chat", input="And now?", previous_response_id=stored.id
        )
        assert follow_up.status == "completed"

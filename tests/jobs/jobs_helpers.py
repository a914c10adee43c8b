"""Helpers of the jobs tests: a live uvicorn server, JSONL files, polling with a deadline."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from live_server import LiveServer as LiveServer

FAST = "fake-chat"
SLOW = "slow-chat"
CRAWL = "crawl-chat"  # a second per token: still running whenever a test looks
ADMIN_KEY = "admin-secret-for-jobs-tests"
MAX_LINES = 120  # the jobs server's batch line limit (conftest.jobs_config)
REPLY = "Hello! I am a fake model."
DEADLINE_S = 60.0
T = TypeVar("T")
SdkFactory = Callable[..., openai.OpenAI]  # (server, key=None) -> a client of that key


@dataclass(frozen=True)
class JobsServer:
    """Where the jobs test server answers, and its keys."""

    base_url: str
    alice: str
    bob: str
    carol: str
    dave: str
    admin: str = ADMIN_KEY


def wait_until(check: Callable[[], T], what: str, deadline_s: float = DEADLINE_S) -> T:
    """Poll `check` until it returns something truthy; fail after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def jsonl(lines: list[Any]) -> bytes:
    """A JSONL file: dicts as JSON, strings as they are."""
    return b"".join(
        (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines
    )


def as_upload(content: bytes, name: str = "batch.jsonl") -> tuple[str, io.BytesIO]:
    """What `files.create(file=...)` takes."""
    return name, io.BytesIO(content)


def chat_line(custom_id: str, model: str = FAST, **body: Any) -> dict[str, Any]:
    """One chat completions request line."""
    messages = [{"role": "user", "content": f"hello {custom_id}"}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": messages, **body},
    }


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]

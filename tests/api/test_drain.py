"""Graceful drain on a real server process: SIGTERM, a second signal, /health and /live, usage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmserve.backends.fake import FakeBackend
from llmserve.types import ChatMessage

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).with_name("drain_server.py")
MODEL = "fake-model"
USER = [{"role": "user", "content": "Hi"}]
SHUTTING_DOWN = "The server is shutting down"
Event = dict[str, Any] | str


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base_url: str
    stderr_path: Path

    def signal(self, sig: signal.Signals) -> float:
        """Send `sig`; when it was sent."""
        self.process.send_signal(sig)
        return time.monotonic()

    def stderr_lines(self) -> list[str]:
        return self.stderr_path.read_text().splitlines()


@contextlib.contextmanager
def drain_server(home: Path, shutdown_timeout: float) -> Iterator[ServerProcess]:
    """The drain test server (slow fake model: 50 ms per token) on a free port."""
    stderr_path = home / "server.log"
    command = [sys.executable, str(SCRIPT), "--home", str(home)]
    command += ["--shutdown-timeout", str(shutdown_timeout), "--token-delay", "0.05"]
    with (
        stderr_path.open("w") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True) as process,
    ):
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            yield ServerProcess(process, f"http://127.0.0.1:{port}", stderr_path)
        finally:
            if process.poll() is None:
                process.kill()


def chat(max_tokens: int, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": USER, "max_tokens": max_tokens}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def read_stream(base_url: str, max_tokens: int, generating: asyncio.Event) -> list[Event]:
    """Every data event of one stream; `generating` is set at its first content."""
    events: list[Event] = []
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=chat(max_tokens)) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
            if content_of(events[-1]):
                generating.set()
    return events


def content_of(event: Event) -> str:
    if isinstance(event, str) or not event.get("choices"):
        return ""
    return str(event["choices"][0]["delta"].get("content") or "")


async def start_streams(base_url: str, count: int, max_tokens: int) -> list[asyncio.Task[Any]]:
    """`count` streams, returned once every one of them is generating."""
    started = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(read_stream(base_url, max_tokens, e)) for e in started]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), timeout=60)
    return tasks


async def wait_for_draining(base_url: str) -> httpx.Response:
    """/health once it answers 503 (the signal has been handled)."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        for _ in range(600):
            health = await http.get("/health")
            if health.status_code == 503:
                return health
            await asyncio.sleep(0.05)
    raise AssertionError("/health never said draining")


def usage_rows(home: Path) -> list[dict[str, Any]]:
    """`llmserve keys usage --json` for `home`."""
    command = [sys.executable, "-m", "llmserve", "keys", "usage", "--json", "--home", str(home)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def num_prompt_tokens() -> int:
    backend = FakeBackend(MODEL)
    text = backend.render_chat([ChatMessage("user", "Hi")])
    return len(backend.encode(text, add_special_tokens=False))


def log_records(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.stderr_lines()]


async def test_streams_that_fit_the_timeout_finish_and_new_requests_get_503(
    tmp_path: Path,
) -> None:
    with drain_server(tmp_path, shutdown_timeout=30) as server:
        streams = await start_streams(server.base_url, 5, max_tokens=100)
        signalled_at = server.signal(signal.SIGTERM)
        health = await wait_for_draining(server.base_url)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            live = await http.get("/live")
            refused = await http.post("/v1/chat/completions", json=chat(5, stream=False))
        results = await asyncio.gather(*streams)
        exit_code = await asyncio.to_thread(server.process.wait, 30 + 5)
        exited_after = time.monotonic() - signalled_at

    assert health.json()["status"] == "draining"
    assert live.status_code == 200
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "server_is_overloaded"
    assert error["message"].startswith(SHUTTING_DOWN)
    for events in results:
        assert events[-1] == "[DONE]"
        assert not any(isinstance(e, dict) and "error" in e for e in events)
        assert events[-2]["usage"]["completion_tokens"] == 100  # type: ignore[index]
    assert exit_code == 0
    assert exited_after < 30 + 5
    assert "Traceback" not in server.stderr_path.read_text()


async def test_streams_past_the_timeout_end_with_an_error_and_usage_is_recorded(
    tmp_path: Path,
) -> None:
    with drain_server(tmp_path, shutdown_timeout=1) as server:
        streams = await start_streams(server.base_url, 5, max_tokens=4000)
        signalled_at = server.signal(signal.SIGTERM)
        results = await asyncio.gather(*streams)
        exit_code = await asyncio.to_thread(server.process.wait, 1 + 5)
        exited_after = time.monotonic() - signalled_at

    assert exit_code == 0
    assert exited_after < 1 + 5
    for events in results:
        assert events[-1] == "[DONE]"
        error = events[-2]["error"]  # type: ignore[index]
        assert error["code"] == "server_is_overloaded"
        assert error["message"].startswith(SHUTTING_DOWN)
    [row] = usage_rows(tmp_path)
    assert (row["key_name"], row["model"]) == ("anonymous", MODEL)
    assert (row["requests"], row["errors"]) == (5, 5)
    assert row["prompt_tokens"] == 5 * num_prompt_tokens()
    streamed = sum(len([e for e in events if content_of(e)]) for events in results)
    assert row["completion_tokens"] == streamed
    assert "Traceback" not in server.stderr_path.read_text()


async def test_a_second_signal_stops_streams_at_once_and_still_records_usage(
    tmp_path: Path,
) -> None:
    with drain_server(tmp_path, shutdown_timeout=300) as server:
        streams = await start_streams(server.base_url, 3, max_tokens=4000)
        server.signal(signal.SIGINT)  # Ctrl-C
        await wait_for_draining(server.base_url)
        signalled_at = server.signal(signal.SIGINT)
        results = await asyncio.gather(*streams)
        exit_code = await asyncio.to_thread(server.process.wait, 30)
        exited_after = time.monotonic() - signalled_at

    assert exit_code == 0
    assert exited_after < 30  # the drain would have waited 300 s
    for events in results:
        assert events[-1] == "[DONE]"
        assert events[-2]["error"]["code"] == "server_is_overloaded"  # type: ignore[index]
    [row] = usage_rows(tmp_path)
    assert (row["requests"], row["errors"]) == (3, 3)
    assert "Traceback" not in server.stderr_path.read_text()


async def test_request_log_lines_carry_id_key_model_status_tokens_and_latency(
    tmp_path: Path,
) -> None:
    with drain_server(tmp_path, shutdown_timeout=5) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            reply = await http.post("/v1/chat/completions", json=chat(3, stream=False))
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.process.wait, 30) == 0

    records = log_records(server)
    assert records[0]["logger"] == "llmserve.server"
    assert f"loading {MODEL}" in records[0]["message"]
    [line] = [r for r in records if r["logger"] == "llmserve.requests"]
    assert line["request_id"] == reply.headers["x-request-id"]
    assert (line["key_id"], line["model"], line["status"]) == ("anonymous", MODEL, 200)
    usage = reply.json()["usage"]
    assert (line["prompt_tokens"], line["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert line["latency_s"] > 0
    assert all(r["time"][:4].isdigit() for r in records)  # every line is timestamped

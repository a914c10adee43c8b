"""Issue 18, done-when 3: background responses are their key's requests.

A key with `max_concurrency` 2 creating 6 background responses at once gets at most 2 accepted
and 429 `rate_limit_exceeded` for the rest; the slots are held until the responses end; rpm counts
at creation; another key's time to first token while they run stays within 2x idle.
A real server process with the built-in model on the real engine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from server_process import create_key, serve, write_config

from llmserve.auth.keys import KeySpec

pytestmark = pytest.mark.slow
T = TypeVar("T")
MODEL = "tiny"
TIMEOUT = httpx.Timeout(120.0)
NUM_TTFT_SAMPLES = 5
NOISE_S = 0.05  # timer and scheduling noise on a loaded machine, added to the 2x bound
LONG = 3000  # tokens: the background responses run for the whole measurement


def wait_until(check: Callable[[], T], what: str, deadline_s: float = 120.0) -> T:
    deadline = time.monotonic() + deadline_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


class Client:
    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {key}"}, timeout=TIMEOUT
        )

    def close(self) -> None:
        self.http.close()

    def background(self, max_output_tokens: int = LONG) -> httpx.Response:
        body = {"model": MODEL, "input": "Tell a long story.", "background": True,
                "max_output_tokens": max_output_tokens}  # fmt: skip
        return self.http.post("/responses", json=body)

    def status(self, response_id: str) -> str:
        return str(self.http.get(f"/responses/{response_id}").json()["status"])

    def cancel(self, response_id: str) -> None:
        self.http.post(f"/responses/{response_id}/cancel").raise_for_status()

    def time_to_first_token(self) -> float:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4, "stream": True}  # fmt: skip
        start = time.perf_counter()
        first: float | None = None
        with self.http.stream("POST", "/chat/completions", json=body) as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if first is None and line.startswith("data: ") and '"content":"' in line:
                    first = time.perf_counter() - start
        assert first is not None
        return first

    def median_ttft(self) -> float:
        return statistics.median(self.time_to_first_token() for _ in range(NUM_TTFT_SAMPLES))


def test_background_responses_take_the_keys_slots_and_leave_the_engine_to_others(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    busy_key = create_key(home, KeySpec(name="busy", max_concurrency=2))
    other_key = create_key(home, KeySpec(name="other"))
    paced_key = create_key(home, KeySpec(name="paced", rpm=2))
    with serve(write_config(tmp_path)) as (process, base_url):
        busy, other, paced = clients = [
            Client(base_url, k) for k in (busy_key, other_key, paced_key)
        ]
        try:
            check_background_limits(busy, other, paced)
        finally:
            for client in clients:
                client.close()
        assert process.poll() is None


def check_background_limits(busy: Client, other: Client, paced: Client) -> None:
    other.time_to_first_token()  # warm up
    idle = other.median_ttft()
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: busy.background(), range(6)))
    accepted = [r.json()["id"] for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code != 200]
    assert 1 <= len(accepted) <= 2
    assert len(refused) == 6 - len(accepted)
    for reply in refused:
        assert reply.status_code == 429
        assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    for response_id in accepted:
        wait_until(lambda r=response_id: busy.status(r) == "in_progress", "it to run")
    during = other.median_ttft()
    print(f"time to first token: {idle * 1000:.0f} ms idle, {during * 1000:.0f} ms during")
    assert all(busy.status(r) == "in_progress" for r in accepted), "they ended too soon"
    assert during <= 2 * idle + NOISE_S, f"TTFT {during:.3f} s during, {idle:.3f} s idle"
    assert busy.background().status_code == 429  # the slots stay held while they run
    for response_id in accepted:
        busy.cancel(response_id)
    reply = wait_until(  # the slots come back once they end
        lambda: (r := busy.background(max_output_tokens=4)).status_code == 200 and r,
        "a slot to be freed",
    )
    busy.cancel(reply.json()["id"])
    assert [paced.background(4).status_code for _ in range(3)] == [200, 200, 429]

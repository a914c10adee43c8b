"""Prompt caching on a real server (tiny-chat on the engine, keys in SQLite, the openai SDK).

Isolation by default: a key reuses only its own cached prompt blocks (or its cache group's, or
its salt's), `cached_tokens` counts only those, and another key guessing a cached prompt waits
as long as for any uncached prompt. Usage reports `cached_tokens` (streamed too) and, on the
Responses API, `cache_write_tokens`; /metrics counts prefix-cache queries and hits per model and
namespace kind.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, ModelConfig, ServerConfig

from .conftest import LiveServer

pytestmark = pytest.mark.slow
MODEL = BUILTIN_CHAT_MODEL
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
]


class Server:
    def __init__(self, url: str, secrets: dict[str, str]) -> None:
        self.url = url
        self.secrets = secrets

    def client(self, name: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.secrets[name], timeout=120)


@pytest.fixture(scope="module")
def server(llmserve_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("prompt-caching")
    secrets = {"a": create_key(home, "a"), "b": create_key(home, "b")}
    for name in ("team-1", "team-2"):
        secrets[name] = create_key(home, name, "--cache-group", "team")
    store = open_key_store(home)
    secrets["c"] = store.create_key(KeySpec("c"))[1]
    store.close()
    chat = ModelConfig(MODEL, source=MODEL, kind="chat")
    config = ServerConfig(models=(chat,), home=home)
    backends = {MODEL: LocalBackend(chat, config.engine, llmserve_home)}
    with LiveServer(create_app(config, backends, build_gatekeeper(config))) as live:
        yield Server(live.url, secrets)


def create_key(home: Path, name: str, *flags: str) -> str:
    """`llmserve keys create` as a user runs it; returns the secret it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "llmserve", "keys", "create", "--name", name, *flags],
        env={**os.environ, "LLMSERVE_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def long_prompt(seed: int, head: str = "", num_words: int = 330) -> str:
    """A prompt of 600+ tokens that shares nothing with other seeds from its first token."""
    rng = random.Random(seed)
    return f"{head} record {seed}: " + " ".join(rng.choice(WORDS) for _ in range(num_words))


def chat(client: openai.OpenAI, prompt: str, **extra: object) -> openai.types.CompletionUsage:
    body = {k: v for k, v in extra.items() if k == "prompt_cache_key"}
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=1,
        extra_body={k: v for k, v in extra.items() if k != "prompt_cache_key"} or None,
        **body,  # type: ignore[arg-type]
    )
    assert answer.usage is not None
    return answer.usage


def cached(usage: openai.types.CompletionUsage) -> int:
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens is not None
    return usage.prompt_tokens_details.cached_tokens


def streamed_ttft(client: openai.OpenAI, prompt: str) -> tuple[float, int]:
    """Seconds to the first (only) token of a streamed answer, and its streamed cached_tokens."""
    started = time.perf_counter()
    first_token_s = None
    cached_tokens = None
    with client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=1,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].finish_reason and first_token_s is None:
                first_token_s = time.perf_counter() - started
            if chunk.usage is not None:
                cached_tokens = cached(chunk.usage)
    assert first_token_s is not None and cached_tokens is not None
    return first_token_s, cached_tokens


def test_a_key_reuses_its_own_prompt_and_no_other_key_can(server: Server) -> None:
    a, b = server.client("a"), server.client("b")
    prompt = long_prompt(1, "Patient Alice Smith")
    first = chat(a, prompt)
    assert first.prompt_tokens >= 600
    assert cached(first) == 0
    assert cached(chat(a, prompt)) >= 256
    assert streamed_ttft(a, prompt)[1] >= 256  # streamed usage says so too
    assert cached(chat(b, prompt)) == 0
    assert cached(chat(server.client("c"), prompt)) == 0


def test_guessing_a_cached_prompt_takes_as_long_as_any_other(server: Server) -> None:
    a, b = server.client("a"), server.client("b")
    right, wrong = [], []
    for round_ in range(5):  # interleaved, each guess a prompt B never sent before
        secret = long_prompt(100 + round_, f"Patient Alice Smith {round_}")
        assert cached(chat(a, secret)) == 0
        assert cached(chat(a, secret)) >= 256  # A's prompt sits in the cache
        right_s, right_cached = streamed_ttft(b, secret)
        wrong_s, wrong_cached = streamed_ttft(
            b, long_prompt(100 + round_, f"Patient Bob Jones {round_}")
        )
        assert (right_cached, wrong_cached) == (0, 0)
        right.append(right_s)
        wrong.append(wrong_s)
    # The same work either way (a full prefill): equal in distribution. A leak would make the
    # right guess several times faster (a few blocks of prefill instead of 600 tokens); the
    # margin only absorbs this shared machine's noise.
    assert statistics.median(right) >= 0.5 * statistics.median(wrong), (right, wrong)


def test_a_cache_group_shares_and_salts_separate(server: Server) -> None:
    one, two = server.client("team-1"), server.client("team-2")
    prompt = long_prompt(2, "Team handbook")
    assert cached(chat(one, prompt)) == 0
    assert cached(chat(two, prompt)) >= 256
    assert cached(chat(server.client("a"), prompt)) == 0  # not in the group
    a = server.client("a")
    salted = long_prompt(3, "Salted")
    assert cached(chat(a, salted, cache_salt="s-1")) == 0
    assert cached(chat(a, salted, cache_salt="s-2")) == 0
    assert cached(chat(a, salted)) == 0  # no salt: the key's own namespace, not a salt's
    assert cached(chat(a, salted, cache_salt="s-1")) >= 256


def test_keys_list_and_admin_show_the_cache_group(server: Server, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmserve", "keys", "create", "--name", "x",
         "--cache-group", "team", "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip().startswith("lls-")
    listed = subprocess.run(
        [sys.executable, "-m", "llmserve", "keys", "list", "--json", "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert '"cache_group": "team"' in listed.stdout
    table = subprocess.run(
        [sys.executable, "-m", "llmserve", "keys", "list", "--home", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "CACHE_GROUP" in table.stdout and "team" in table.stdout


def test_completions_and_responses_report_cached_and_written_tokens(server: Server) -> None:
    a = server.client("a")
    prompt = long_prompt(4, "Responses")
    first = a.responses.create(model=MODEL, input=prompt, max_output_tokens=16)
    assert first.usage is not None
    details = first.usage.input_tokens_details
    assert isinstance(details.cached_tokens, int) and isinstance(details.cache_write_tokens, int)
    assert details.cached_tokens == 0 and details.cache_write_tokens >= 256
    second = a.responses.create(model=MODEL, input=prompt, max_output_tokens=16)
    assert second.usage is not None
    assert second.usage.input_tokens_details.cached_tokens >= 256
    assert second.usage.input_tokens_details.cache_write_tokens < 256
    text = long_prompt(5, "Completion")
    a.completions.create(model=MODEL, prompt=text, max_tokens=1)
    again = a.completions.create(model=MODEL, prompt=text, max_tokens=1)
    assert again.usage is not None and cached(again.usage) >= 256


def test_prompt_cache_fields_are_checked(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.secrets['a']}"}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for field, value in (("cache_salt", ""), ("prompt_cache_key", 7)):
        answer = httpx.post(
            f"{server.url}/v1/chat/completions", json={**body, field: value}, headers=headers
        )
        assert answer.status_code == 400, answer.text
        assert field in answer.json()["error"]["message"] or answer.json()["error"]["param"]
    ok = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={**body, "prompt_cache_key": "conv-1", "cache_salt": "s"},
        headers=headers,
        timeout=120,
    )
    assert ok.status_code == 200


def test_metrics_count_prefix_cache_per_namespace_kind(server: Server) -> None:
    prompt = long_prompt(6, "Metrics")
    chat(server.client("team-1"), prompt)
    chat(server.client("team-2"), prompt)
    text = httpx.get(f"{server.url}/metrics").text
    queries = metric(text, "llmserve:prefix_cache_queries_total", "group")
    hits = metric(text, "llmserve:prefix_cache_hits_total", "group")
    assert queries >= 1200 and hits >= 256
    assert "Metrics" not in text and "record 6" not in text  # never a prompt in a label


def metric(text: str, name: str, kind: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and f'namespace="{kind}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{namespace={kind}}} not in /metrics")

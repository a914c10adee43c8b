"""Issue 18, done-when 1: grammars that overflowed llguidance's native stack no longer kill the
server. Each gets a 400 naming its field (or compiles and answers), and another key's streams,
running meanwhile, end with `[DONE]`. A real server process: a crash would end it, not pytest.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from deep_grammars import ref_chain_schema, rule_chain_lark
from server_process import create_key, serve, write_config

from llmserve.auth.keys import KeySpec
from llmserve.structured.grammar_depth import MAX_GRAMMAR_DEPTH

pytestmark = pytest.mark.slow
MODEL = "tiny"
USER = [{"role": "user", "content": "Fill in the form."}]
TIMEOUT = httpx.Timeout(120.0)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": USER, "max_tokens": 40, **extra}


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "deep", "schema": schema}}


def response(schema: dict[str, Any]) -> dict[str, Any]:
    text = {"format": {"type": "json_schema", "name": "deep", "schema": schema}}
    return {"model": MODEL, "input": "Fill in the form.", "max_output_tokens": 40, "text": text}


# (route, body, the field a 400 must name)
ATTACKS = [
    ("/chat/completions", chat(response_format=schema_format(ref_chain_schema(1000))),
     "response_format"),
    ("/responses", response(ref_chain_schema(1000)), "text.format"),
    ("/chat/completions", chat(structured_outputs={"grammar": rule_chain_lark(3000)}),
     "structured_outputs"),
]  # fmt: skip
TOO_DEEP = [
    ("/chat/completions", chat(response_format=schema_format(ref_chain_schema(5000))),
     "response_format"),
    ("/responses", response(ref_chain_schema(5000)), "text.format"),
    ("/chat/completions", chat(structured_outputs={"grammar": rule_chain_lark(20_000)}),
     "structured_outputs"),
]  # fmt: skip


class Streams:
    """Another key's streaming chats, each kept as its raw SSE lines."""

    def __init__(self, base_url: str, key: str, count: int) -> None:
        self.started = threading.Barrier(count + 1, timeout=120)
        self.lines: list[list[str]] = [[] for _ in range(count)]
        self.threads = [
            threading.Thread(target=self._stream, args=(base_url, key, i)) for i in range(count)
        ]

    def __enter__(self) -> Streams:
        for thread in self.threads:
            thread.start()
        self.started.wait()  # every stream has its first chunk
        return self

    def __exit__(self, *exc_info: object) -> None:
        for thread in self.threads:
            thread.join(timeout=180)

    def _stream(self, base_url: str, key: str, index: int) -> None:
        body = {"model": MODEL, "messages": USER, "max_tokens": 300, "stream": True}
        headers = {"authorization": f"Bearer {key}"}
        with httpx.stream(
            "POST", f"{base_url}/chat/completions", json=body, headers=headers, timeout=TIMEOUT
        ) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: "):
                    self.lines[index].append(line)
                    if len(self.lines[index]) == 1:
                        self.started.wait()


def send(base_url: str, key: str, route: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(f"{base_url}{route}", json=body, headers=headers, timeout=TIMEOUT)


def assert_400_naming(reply: httpx.Response, field: str) -> None:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == field
    assert error["type"] == "invalid_request_error"
    assert "too deeply nested" in error["message"]
    assert str(MAX_GRAMMAR_DEPTH) in error["message"]


def test_deep_grammars_get_an_answer_or_a_400_and_the_server_stays_up(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    attacker = create_key(tmp_path / "home", KeySpec(name="attacker"))
    victim = create_key(tmp_path / "home", KeySpec(name="victim"))
    with serve(config) as (process, base_url):
        with Streams(base_url, victim, 2) as streams:
            for route, body, field in ATTACKS:
                reply = send(base_url, attacker, route, body)
                assert reply.status_code in (200, 400), reply.text
                if reply.status_code == 400:
                    assert_400_naming(reply, field)
                assert process.poll() is None, f"the server died on {route} ({field})"
            for route, body, field in TOO_DEEP:
                assert_400_naming(send(base_url, attacker, route, body), field)
                assert process.poll() is None
        for lines in streams.lines:
            assert lines[-1] == "data: [DONE]"
            assert len(lines) > 2
        assert process.poll() is None
        health = httpx.get(base_url.removesuffix("/v1") + "/health", timeout=TIMEOUT)
        assert health.status_code == 200


def test_a_deep_schema_within_the_limit_compiles_and_is_followed(tmp_path: Path) -> None:
    """600 `$ref`s (depth 1,802 of 2,048): compiled on a big stack, followed by the model."""
    config = write_config(tmp_path)
    key = create_key(tmp_path / "home", KeySpec(name="user"))
    with serve(config) as (process, base_url):
        body = chat(response_format=schema_format(ref_chain_schema(600)), max_tokens=30)
        reply = send(base_url, key, "/chat/completions", body)
        assert reply.status_code == 200, reply.text
        text = reply.json()["choices"][0]["message"]["content"]
        assert text.startswith('{"next":{"next":')
        assert reply.json()["choices"][0]["finish_reason"] == "length"  # cut long before the end
        assert process.poll() is None

"""`tool_choice: auto` over HTTP: a model that writes Hermes calls (one byte per token) gets
OpenAI's `tool_calls`, whole and streamed chunk for chunk as OpenAI frames them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

MODEL = "fake-model"
REPLY = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
)
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("get_weather", "get_time")
]
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "tools": TOOLS}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    config = ServerConfig(models=(ModelConfig(MODEL, source="fake", backend="fake"),))
    app = create_app(config, {MODEL: FakeBackend(MODEL, reply=REPLY)}, OpenGatekeeper())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_auto_answer_has_tool_calls_and_null_content(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=BODY)
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    assert [(c["type"], c["function"]) for c in message["tool_calls"]] == [
        ("function", {"name": "get_weather", "arguments": '{"city": "Paris"}'}),
        ("function", {"name": "get_time", "arguments": "{}"}),
    ]
    assert all(c["id"].startswith("call_") and len(c["id"]) == 29 for c in message["tool_calls"])


async def test_parallel_tool_calls_false_keeps_the_first(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json={**BODY, "parallel_tool_calls": False}
    )
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"


async def test_streamed_calls_are_framed_as_openai_does(client: httpx.AsyncClient) -> None:
    deltas = []
    async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                [choice] = json.loads(line[6:])["choices"]
                deltas.append((choice["delta"], choice["finish_reason"]))
    assert deltas[0] == ({"role": "assistant", "content": None}, None)
    assert deltas[-1] == ({}, "tool_calls")
    calls = [d["tool_calls"] for d, _ in deltas[1:-1]]
    assert all(len(c) == 1 for c in calls)  # no content deltas: only calls were made
    firsts = [c[0] for c in calls if "id" in c[0]]
    assert [(f["index"], f["type"], f["function"]) for f in firsts] == [
        (0, "function", {"name": "get_weather", "arguments": ""}),
        (1, "function", {"name": "get_time", "arguments": ""}),
    ]
    fragments = [c[0] for c in calls if "id" not in c[0]]
    assert all(
        set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments
    )
    joined = [
        "".join(f["function"]["arguments"] for f in fragments if f["index"] == i) for i in (0, 1)
    ]
    assert joined == ['{"city": "Paris"}', "{}"]
    assert len([f for f in fragments if f["index"] == 0]) > 1  # streamed, not sent whole


async def test_tool_history_is_accepted(client: httpx.AsyncClient) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    history = [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ]
    response = await client.post(
        "/v1/chat/completions", json={**BODY, "messages": history, "tool_choice": "none"}
    )
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == REPLY

"""Responses streaming on the wire: `event: <type>` + `data: {json}` per event, no `[DONE]`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

from .conftest import CHAT_MODEL, REPLY, LiveServer

FAILING_MODEL = "fake-failing"
# The id in the message is the server's own (the client's x-request-id is only echoed).
SERVER_ERROR = re.compile(
    r"The server had an error while processing your request\. "
    r"Please retry; if the error persists, report request id req_[0-9a-f]{32}\."
)
TYPES_BEFORE_DELTAS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TYPES_AFTER_DELTAS = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def fake_app(gatekeeper: OpenGatekeeper) -> Any:
    """One working and one failing (after 3 tokens) fake chat model, no keys."""
    config = ServerConfig(
        models=(
            ModelConfig(CHAT_MODEL, source="fake", backend="fake"),
            ModelConfig(FAILING_MODEL, source="fake", backend="fake"),
        )
    )
    backends = {
        CHAT_MODEL: FakeBackend(CHAT_MODEL, reply=REPLY),
        FAILING_MODEL: FakeBackend(FAILING_MODEL, reply=REPLY, fail_after_tokens=3),
    }
    return create_app(config, backends, gatekeeper)


@pytest.fixture
def gatekeeper() -> OpenGatekeeper:
    return OpenGatekeeper()


@pytest.fixture
async def http(gatekeeper: OpenGatekeeper) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fake_app(gatekeeper))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def parse_events(raw: bytes) -> list[dict[str, Any]]:
    """Every event of a Responses stream; asserts the exact framing of each one."""
    assert b"[DONE]" not in raw
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == ""  # the body ends right after the last event's blank line
    events = []
    for block in blocks[:-1]:
        name_line, data_line = block.split("\n")
        event = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {event['type']}"
        assert data_line == "data: " + json.dumps(event, separators=(",", ":"))
        events.append(event)
    return events


async def stream(http: httpx.AsyncClient, model: str) -> httpx.Response:
    body = {"model": model, "input": "Capital of France?", "stream": True}
    response = await http.post("/v1/responses", json=body, headers={"x-request-id": "req-events-1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response


async def test_stream_frames_each_event_with_its_name(
    http: httpx.AsyncClient, gatekeeper: OpenGatekeeper
) -> None:
    raw = (await stream(http, CHAT_MODEL)).content
    assert raw.startswith(b'event: response.created\ndata: {"type":"response.created",')
    assert raw.endswith(b"\n\n") and not raw.endswith(b"\n\n\n")
    events = parse_events(raw)
    num_deltas = len(events) - 8
    assert [e["type"] for e in events] == [
        *TYPES_BEFORE_DELTAS,
        *["response.output_text.delta"] * num_deltas,
        *TYPES_AFTER_DELTAS,
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == REPLY
    assert gatekeeper.num_in_flight == 0 and not gatekeeper.usage[0].is_error


async def test_error_mid_stream_is_an_error_event(
    http: httpx.AsyncClient, gatekeeper: OpenGatekeeper
) -> None:
    events = parse_events((await stream(http, FAILING_MODEL)).content)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == REPLY[:3]
    assert SERVER_ERROR.fullmatch(events[-1]["message"])
    assert events[-1] == {
        "type": "error",
        "code": None,
        "message": events[-1]["message"],
        "param": None,
        "sequence_number": len(events) - 1,
    }
    assert gatekeeper.num_in_flight == 0
    assert gatekeeper.usage[0].is_error and gatekeeper.usage[0].completion_tokens == 3


async def test_chat_stream_keeps_data_only_framing_and_done(http: httpx.AsyncClient) -> None:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    raw = (await http.post("/v1/chat/completions", json=body)).content
    assert raw.startswith(b'data: {"id":"chatcmpl-')
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    assert b"event:" not in raw


@pytest.fixture(scope="module")
def sdk() -> Iterator[openai.OpenAI]:
    """The openai SDK against a live server over the fake models."""
    with (
        LiveServer(fake_app(OpenGatekeeper())) as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


@pytest.mark.slow
def test_sdk_stream_helper_reads_named_events(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model=CHAT_MODEL, input="Capital of France?") as events:
        types = [event.type for event in events]
        final = events.get_final_response()
    assert types[:4] == TYPES_BEFORE_DELTAS and types[-4:] == TYPES_AFTER_DELTAS
    assert final.output_text == REPLY and final.status == "completed"


@pytest.mark.slow
def test_sdk_create_stream_yields_typed_events(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model=CHAT_MODEL, input="Capital?", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == REPLY
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == REPLY


@pytest.mark.slow
def test_sdk_create_stream_yields_the_error_event(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model=FAILING_MODEL, input="Capital?", stream=True))
    last = events[-1]
    assert last.type == "error"
    assert last.message.startswith("The server had an error while processing your request.")
    assert last.sequence_number == len(events) - 1

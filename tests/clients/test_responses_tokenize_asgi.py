"""Responses, the response store and /tokenize edge cases, through the app in process (fast)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

MODEL = "fake-chat"
REPLY = "Hello there."


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    config = ServerConfig(models=(ModelConfig(MODEL, source="fake", backend="fake"),))
    backends = {MODEL: FakeBackend(MODEL, reply=REPLY, max_model_len=128)}
    app = create_app(config, backends, OpenGatekeeper())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_response_cut_at_max_output_tokens_is_incomplete(http: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "input": "hi", "max_output_tokens": 5}
    response = (await http.post("/v1/responses", json=body)).json()
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"][0]["text"] == REPLY[:5]
    assert response["usage"]["output_tokens"] == 5


async def test_streamed_response_ends_incomplete_and_is_stored(http: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "input": "hi", "max_output_tokens": 3, "stream": True}
    answer = await http.post("/v1/responses", json=body)
    blocks = [block.split("\n") for block in answer.text.split("\n\n") if block]
    events = [json.loads(data.removeprefix("data: ")) for _, data in blocks]
    assert events[-1]["type"] == "response.incomplete"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    stored = await http.get(f"/v1/responses/{events[-1]['response']['id']}")
    assert stored.json()["output"][0]["content"][0]["text"] == REPLY[:3]


async def test_store_false_is_not_retrievable(http: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "input": "hi", "store": False}
    response = (await http.post("/v1/responses", json=body)).json()
    missing = await http.get(f"/v1/responses/{response['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"No response found with id '{response['id']}'."


@pytest.mark.parametrize(
    ("body", "param", "text"),
    [
        (
            {"input": "hi", "background": True, "store": False},
            "background",
            "`store: true`",
        ),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type", "not supported"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input",
            "input_text",
        ),
        ({"input": "hi " * 200}, "input", "maximum context length is 128 tokens"),
    ],
)
async def test_unsupported_response_requests_are_400(
    http: httpx.AsyncClient, body: dict[str, object], param: str, text: str
) -> None:
    answer = await http.post("/v1/responses", json={"model": MODEL, **body})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert text in answer.json()["error"]["message"]


async def test_tokenize_needs_exactly_one_of_prompt_and_messages(http: httpx.AsyncClient) -> None:
    both = {"model": MODEL, "prompt": "a", "messages": [{"role": "user", "content": "a"}]}
    assert (await http.post("/tokenize", json=both)).status_code == 400
    assert (await http.post("/tokenize", json={"model": MODEL})).status_code == 400
    unknown = await http.post("/tokenize", json={"model": "nope", "prompt": "a"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


async def test_tokenize_round_trips_through_detokenize(http: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "prompt": "héllo", "add_special_tokens": False}
    tokens = (await http.post("/tokenize", json=body)).json()
    assert tokens["count"] == len("héllo".encode()) and tokens["max_model_len"] == 128
    body = {"model": MODEL, "tokens": tokens["tokens"]}
    assert (await http.post("/detokenize", json=body)).json() == {"prompt": "héllo"}


async def test_developer_messages_count_the_same_in_chat_and_tokenize(
    http: httpx.AsyncClient,
) -> None:
    messages = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": "Hi"},
    ]
    counted = (await http.post("/tokenize", json={"model": MODEL, "messages": messages})).json()
    chat = await http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 1}
    )
    as_system = [{"role": "system", "content": "Answer briefly."}, messages[1]]
    system_count = await http.post("/tokenize", json={"model": MODEL, "messages": as_system})
    assert counted["count"] == chat.json()["usage"]["prompt_tokens"]
    assert counted["count"] == system_count.json()["count"]

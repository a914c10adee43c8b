"""The Responses API as agents use it, against the built-in model on the real engine: the full
response object, function tools and their stream events, tool loops, input items and tokens,
compaction, conversations (each key's alone) and WebSocket mode, through the real openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from open_responses import check_event, check_response
from responses_helpers import MODEL, ResponsesServer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def post(server: ResponsesServer, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(f"{server.base_url}{path}", json=body, headers=headers, timeout=120)


def stream_events(server: ResponsesServer, key: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `data:` payloads of a streamed response, in order."""
    headers = {"authorization": f"Bearer {key}"}
    url = f"{server.base_url}/responses"
    with httpx.stream(
        "POST", url, json={**body, "stream": True}, headers=headers, timeout=120
    ) as r:
        assert r.status_code == 200
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


@pytest.mark.slow
@pytest.mark.parametrize("tools", [False, True])
def test_every_response_object_and_event_follows_the_specification(
    responses_server: ResponsesServer, tools: bool
) -> None:
    body: dict[str, Any] = {"model": MODEL, "input": "Hello!", "max_output_tokens": 24}
    if tools:
        body.update(tools=[WEATHER_TOOL], tool_choice="required")
    answer = post(responses_server, responses_server.alice, "/responses", body)
    assert answer.status_code == 200
    check_response(answer.json())
    events = stream_events(responses_server, responses_server.alice, body)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        check_event(event)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    created = {e["response"]["created_at"] for e in events if "response" in e}
    assert len(created) == 1  # one response, one creation time, in every event


@pytest.mark.slow
def test_a_forced_function_call_streams_its_arguments_and_parses(
    responses_server: ResponsesServer,
) -> None:
    body = {"model": MODEL, "input": "Weather in Paris?", "tools": [WEATHER_TOOL],
            "tool_choice": "required", "max_output_tokens": 512,
            "parallel_tool_calls": False}  # fmt: skip
    events = stream_events(responses_server, responses_server.alice, body)
    types = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in types
    deltas = "".join(e["delta"] for e in events if e["type"].endswith("arguments.delta"))
    (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    final = events[-1]["response"]
    (call,) = [item for item in final["output"] if item["type"] == "function_call"]
    assert deltas == done["arguments"] == call["arguments"]
    assert call["name"] == done["name"] == "get_weather"
    assert isinstance(json.loads(call["arguments"])["city"], str)
    assert call["call_id"].startswith("call_") and call["status"] == "completed"
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["id"] == call["id"] and added["item"]["arguments"] == ""


@pytest.mark.slow
def test_a_tool_loop_runs_with_and_without_previous_response_id(alice: openai.OpenAI) -> None:
    first = alice.responses.create(
        model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required", max_output_tokens=512, parallel_tool_calls=False,
    )  # fmt: skip
    (call,) = [item for item in first.output if item.type == "function_call"]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}
    chained = alice.responses.create(
        model=MODEL, previous_response_id=first.id, input=[result],  # type: ignore[list-item]
        tools=[WEATHER_TOOL], max_output_tokens=16,  # type: ignore[list-item]
    )  # fmt: skip
    assert chained.status in ("completed", "incomplete")
    resent = alice.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,
             "arguments": call.arguments},
            result,
        ],  # type: ignore[list-item]
        max_output_tokens=16,
    )  # fmt: skip
    assert resent.usage is not None and chained.usage is not None
    # Both prompts hold the user turn, the call and its result: the chained one says the same.
    assert resent.usage.input_tokens > 20 and chained.usage.input_tokens > 20


@pytest.mark.slow
def test_missing_previous_response_is_previous_response_not_found(
    responses_server: ResponsesServer,
) -> None:
    body = {"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"}
    answer = post(responses_server, responses_server.alice, "/responses", body)
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id"


@pytest.mark.slow
def test_input_items_and_input_tokens(alice: openai.OpenAI) -> None:
    made = alice.responses.create(model=MODEL, input="Count me.", max_output_tokens=4)
    items = alice.responses.input_items.list(made.id)
    (item,) = items.data
    assert item.type == "message" and item.role == "user"
    assert item.content[0].text == "Count me."  # type: ignore[union-attr]
    counted = alice.responses.input_tokens.count(model=MODEL, input="Count me.")
    assert made.usage is not None and counted.input_tokens == made.usage.input_tokens


@pytest.mark.slow
def test_compact_keeps_user_messages_and_a_compaction_item_that_can_be_sent_back(
    alice: openai.OpenAI,
) -> None:
    turns = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "Remember it."},
    ]
    compacted = alice.responses.compact(model=MODEL, input=turns)  # type: ignore[arg-type]
    assert compacted.object == "response.compaction"
    kinds = [item.type for item in compacted.output]
    assert kinds == ["message", "message", "compaction"]
    assert compacted.usage.input_tokens > 0
    follow_up = [
        *(i.model_dump(warnings=False) for i in compacted.output),
        {"role": "user", "content": "Name?"},
    ]
    answer = alice.responses.create(model=MODEL, input=follow_up, max_output_tokens=4)  # type: ignore[arg-type]
    assert answer.status in ("completed", "incomplete")


@pytest.mark.slow
def test_conversations_are_durable_and_each_keys_own(
    alice: openai.OpenAI, bob: openai.OpenAI
) -> None:
    conversation = alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "First."}], metadata={"k": "v"}
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"k": "v"}
    alice.responses.create(
        model=MODEL, conversation=conversation.id, input="Second.", max_output_tokens=4
    )
    items = alice.conversations.items.list(conversation.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert [getattr(i, "role", None) for i in items] == ["user", "user", "assistant"]
    one = alice.conversations.items.retrieve(items[0].id, conversation_id=conversation.id)
    assert one.id == items[0].id
    alice.conversations.items.delete(items[0].id, conversation_id=conversation.id)
    assert len(alice.conversations.items.list(conversation.id).data) == 2
    updated = alice.conversations.update(conversation.id, metadata={"k": "w"})
    assert updated.metadata == {"k": "w"}
    with pytest.raises(openai.NotFoundError) as theirs:
        bob.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError) as unknown:
        bob.conversations.retrieve("conv_unknown")
    assert theirs.value.body == {  # the same body as an unknown id, but for the id itself
        **unknown.value.body,  # type: ignore[dict-item]
        "message": f"Conversation with id '{conversation.id}' not found.",
    }
    with pytest.raises(openai.NotFoundError):
        bob.conversations.items.list(conversation.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model=MODEL, conversation=conversation.id, input="x")
    deleted = alice.conversations.delete(conversation.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        alice.conversations.retrieve(conversation.id)


@pytest.mark.slow
def test_websocket_mode_runs_turns_on_one_socket(alice: openai.OpenAI) -> None:
    with alice.responses.connect() as connection:
        connection.send({"type": "response.create", "model": MODEL, "input": "Hi!",
                         "max_output_tokens": 8})  # fmt: skip
        first = until_done(connection)
        for event in first:
            check_event(event)
        response_id = first[-1]["response"]["id"]
        connection.send({"type": "response.create", "model": MODEL, "input": "Again.",
                         "previous_response_id": response_id, "max_output_tokens": 8})  # fmt: skip
        second = until_done(connection)
        assert second[-1]["response"]["previous_response_id"] == response_id
        assert [e["sequence_number"] for e in second] == list(range(len(second)))
        connection.send({"type": "response.create", "model": "no-such-model", "input": "x"})
        (error,) = until_done(connection)
        assert error["type"] == "error" and error["status"] == 404
        assert error["error"]["code"] == "model_not_found"


def until_done(connection: Any) -> list[dict[str, Any]]:
    """The raw events of one turn, up to its last."""
    events: list[dict[str, Any]] = []
    while True:
        events.append(json.loads(connection.recv_bytes()))
        if events[-1]["type"] in ("response.completed", "response.incomplete", "error"):
            return events


@pytest.mark.slow
def test_websocket_upgrade_without_a_key_is_refused(responses_server: ResponsesServer) -> None:
    url = responses_server.base_url.replace("http://", "ws://") + "/responses"
    headers = {"authorization": "Bearer sk-wrong"}
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers, open_timeout=30).close()
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"

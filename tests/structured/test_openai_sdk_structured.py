"""The openai SDK's structured output and tool helpers against the real engine (random model)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from .conftest import MODEL

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]


class Weather(BaseModel):
    city: str = Field(max_length=12)
    unit: Literal["celsius", "fahrenheit"]
    days: int = Field(ge=1, le=7)


class Pet(BaseModel):
    name: str = Field(max_length=8)
    kind: Literal["cat", "dog"]
    legs: list[Annotated[int, Field(ge=0, le=8)]] = Field(max_length=4)


def schema_of(model: type[BaseModel]) -> dict[str, object]:
    schema = {"name": model.__name__, "schema": model.model_json_schema(), "strict": True}
    return {"type": "json_schema", "json_schema": schema}


def weather_tool() -> dict[str, object]:
    return openai.pydantic_function_tool(Weather, name="get_weather")  # type: ignore[return-value]


def test_parse_returns_a_parsed_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, response_format=Pet, seed=1, max_tokens=200
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Pet)
    assert choice.message.parsed == Pet.model_validate_json(choice.message.content or "")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tool_choice", ["required", "named"])
def test_forced_tool_calls_are_valid(client: openai.OpenAI, tool_choice: str, stream: bool) -> None:
    choice: object = (
        "required"
        if tool_choice == "required"
        else {"type": "function", "function": {"name": "get_weather"}}
    )
    calls, reason, content = call_tools(client, choice, stream=stream, seed=7)
    assert reason == "tool_calls"
    assert content is None
    assert calls and all(name == "get_weather" for name, _, _ in calls)
    for _, arguments, call_id in calls:
        Weather.model_validate_json(arguments)
        assert call_id.startswith("call_")


def test_same_seed_same_arguments_streamed_and_not(client: openai.OpenAI) -> None:
    whole = call_tools(client, "required", stream=False, seed=11)
    streamed = call_tools(client, "required", stream=True, seed=11)
    assert [c[:2] for c in whole[0]] == [c[:2] for c in streamed[0]]


def test_parallel_tool_calls_false_gives_one_call(client: openai.OpenAI) -> None:
    for seed in range(3):
        calls, reason, _ = call_tools(client, "required", stream=False, seed=seed, parallel=False)
        assert len(calls) == 1 and reason == "tool_calls"


def test_stream_helper_yields_parsed_arguments(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=MESSAGES,
        tools=[openai.pydantic_function_tool(Weather, name="get_weather")],
        tool_choice="required",
        parallel_tool_calls=False,
        seed=3,
        max_tokens=200,
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert len(done) == 1 and isinstance(done[0].parsed_arguments, Weather)
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == done[0].parsed_arguments


def call_tools(
    client: openai.OpenAI, tool_choice: object, *, stream: bool, seed: int, parallel: bool = True
) -> tuple[list[tuple[str, str, str]], str | None, str | None]:
    """(name, arguments, id) per call, the finish reason and the content."""
    kwargs: dict[str, object] = dict(
        model=MODEL,
        messages=MESSAGES,
        tools=[weather_tool()],
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        seed=seed,
        max_tokens=300,
    )
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]  # type: ignore[call-overload]
        calls = [
            (c.function.name, c.function.arguments, c.id) for c in choice.message.tool_calls or []
        ]
        return calls, choice.finish_reason, choice.message.content
    return joined_stream(client.chat.completions.create(**kwargs, stream=True))  # type: ignore[call-overload]


def joined_stream(chunks: object) -> tuple[list[tuple[str, str, str]], str | None, str | None]:
    """Joins tool-call deltas as a client does, checking OpenAI's framing on the way."""
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    arguments: dict[int, str] = {}
    content: str | None = None
    reason = None
    for chunk in chunks:  # type: ignore[attr-defined]
        [choice] = chunk.choices
        delta = choice.delta
        if delta.content:
            content = (content or "") + delta.content
        for call in delta.tool_calls or []:
            if call.index not in names:  # the first delta: index, id, type, name, arguments ""
                assert call.id and call.type == "function" and call.function.arguments == ""
                names[call.index], ids[call.index] = call.function.name, call.id
                arguments[call.index] = ""
            else:
                assert call.id is None and call.function.name is None
                arguments[call.index] += call.function.arguments
        if choice.finish_reason is not None:
            assert delta.content is None and not delta.tool_calls  # the last chunk: delta {}
            reason = choice.finish_reason
    for index, text in arguments.items():
        json.loads(text)
        assert sorted(names) == list(range(len(names))) and index in ids
    return [(names[i], arguments[i], ids[i]) for i in sorted(names)], reason, content


def test_responses_parse_returns_a_parsed_object(client: openai.OpenAI) -> None:
    response = client.responses.parse(
        model=MODEL, input="A pet, please.", text_format=Pet, max_output_tokens=200
    )
    assert response.status == "completed"
    assert isinstance(response.output_parsed, Pet)
    assert response.text.format.type == "json_schema"


def test_responses_bad_schema_is_400(client: openai.OpenAI) -> None:
    bad = {"type": "json_schema", "name": "pet", "schema": {"type": "foo"}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="Hi", text={"format": bad})  # type: ignore[arg-type,typeddict-item]
    error = caught.value.response.json()["error"]
    assert error["param"] == "text.format"
    assert error["message"].startswith("Invalid schema for text.format 'pet': ")


def test_json_object_and_structured_outputs_extras(client: openai.OpenAI) -> None:
    choice = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=50,
        seed=2,
        extra_body={"structured_outputs": {"choice": ["sunny", "rainy"]}},
    ).choices[0]
    assert choice.message.content in ("sunny", "rainy") and choice.finish_reason == "stop"
    obj = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=3,
        seed=1,
        response_format={"type": "json_object"},
    ).choices[0]
    text = obj.message.content or ""
    assert text.startswith("{")
    if obj.finish_reason == "stop":  # "{}" fits in 3 tokens
        assert isinstance(json.loads(text), dict)
    else:
        assert obj.finish_reason == "length"
    cut = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=3, response_format=schema_of(Pet)
    ).choices[0]
    assert cut.finish_reason == "length"  # {"name":"…"} takes more than 3 tokens
    assert (cut.message.content or "").startswith('{"')


def test_completions_follow_a_regex(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model=MODEL,
        prompt="The year was",
        max_tokens=20,
        n=3,
        seed=4,
        extra_body={"structured_outputs": {"regex": " (19|20)[0-9]{2}\\."}},
    )
    for choice in completion.choices:
        assert re.fullmatch(r" (19|20)[0-9]{2}\.", choice.text) and choice.finish_reason == "stop"

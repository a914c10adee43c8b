"""JSON from the built-in random model: compact by default, whitespace only with `flexible`.

Random weights pick whitespace whenever a grammar allows it, so these answers show what the
grammar permits: OpenAI writes `{"a":1,"b":[1,2]}`, never `{\\r"a"  :\\t1}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from live_server import LiveServer

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.local import LocalBackend
from llmserve.config import (
    BUILTIN_CHAT_MODEL,
    EngineConfig,
    JsonWhitespace,
    ModelConfig,
    ServerConfig,
    StructuredConfig,
)
from llmserve.structured.json_whitespace import lark_json_options
from llmserve.structured.tool_formats import MISTRAL_ARGS, forced_calls_lark

pytestmark = pytest.mark.slow

MODEL = "tiny-local"
MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]
SEEDS = range(4)
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER}}


def sdk_for(whitespace: JsonWhitespace, home: Path) -> Iterator[openai.OpenAI]:
    """An openai client of a real server whose `structured.whitespace` is `whitespace`."""
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL, max_model_len=1024)
    engine = EngineConfig(kv_cache_memory_mb=32, max_num_seqs=8)
    structured = StructuredConfig(whitespace=whitespace)
    config = ServerConfig(models=(model,), home=home, engine=engine, structured=structured)
    backend = LocalBackend(model, engine, home, structured)
    app = create_app(config, {MODEL: backend}, build_gatekeeper(config))
    with (
        LiveServer(app) as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk,
    ):
        yield sdk


@pytest.fixture(scope="module")
def compact(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    yield from sdk_for("compact", tmp_path_factory.mktemp("compact-home"))


@pytest.fixture(scope="module")
def flexible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    yield from sdk_for("flexible", tmp_path_factory.mktemp("flexible-home"))


def whitespace_between_tokens(text: str) -> str:
    """The whitespace characters of JSON `text` that lie outside its strings."""
    found, in_string, escaped = [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped = char == "\\"
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char.isspace():
            found.append(char)
    return "".join(found)


def tool_arguments(sdk: openai.OpenAI, seed: int, *, stream: bool = False) -> str:
    kwargs: dict[str, object] = dict(
        model=MODEL, messages=MESSAGES, tools=[TOOL], tool_choice="required",
        parallel_tool_calls=False, seed=seed, max_tokens=300,
    )  # fmt: skip
    if stream:
        chunks = sdk.chat.completions.create(**kwargs, stream=True)  # type: ignore[call-overload]
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        return "".join(call.function.arguments or "" for d in deltas for call in d.tool_calls or [])
    choice = sdk.chat.completions.create(**kwargs).choices[0]  # type: ignore[call-overload]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    return str(call.function.arguments)


def schema_answer(
    sdk: openai.OpenAI, seed: int, response_format: object, *, whole: bool = True
) -> str:
    """The answer's content; `whole`: it must have ended by its grammar, not by max_tokens."""
    choice = sdk.chat.completions.create(
        model=MODEL, messages=MESSAGES, response_format=response_format,  # type: ignore[arg-type]
        seed=seed, max_tokens=300,
    ).choices[0]  # fmt: skip
    assert choice.finish_reason == "stop" or not whole, choice.message.content
    return choice.message.content or ""


def test_tool_call_arguments_are_compact(compact: openai.OpenAI) -> None:
    for seed in SEEDS:
        for stream in (False, True):
            arguments = tool_arguments(compact, seed, stream=stream)
            assert json.loads(arguments).keys() == {"city", "days", "unit"}
            assert whitespace_between_tokens(arguments) == "", arguments


def test_json_schema_answers_are_compact(compact: openai.OpenAI) -> None:
    for seed in SEEDS:
        content = schema_answer(compact, seed, SCHEMA_FORMAT)
        assert json.loads(content).keys() == {"city", "days", "unit"}
        assert whitespace_between_tokens(content) == "", content


def test_json_object_answers_are_compact(compact: openai.OpenAI) -> None:
    for seed in SEEDS:
        # NOTE: a random model writes keys until max_tokens: the answer may be cut short
        content = schema_answer(compact, seed, {"type": "json_object"}, whole=False)
        assert content.startswith("{")
        assert whitespace_between_tokens(content) == "", content


def test_responses_text_format_is_compact(compact: openai.OpenAI) -> None:
    text_format = {"type": "json_schema", "name": "weather", "schema": WEATHER}
    response = compact.responses.create(
        model=MODEL,
        input="Weather?",
        text={"format": text_format},
        max_output_tokens=300,  # type: ignore[typeddict-item]
    )
    assert response.status == "completed"
    assert json.loads(response.output_text).keys() == {"city", "days", "unit"}
    assert whitespace_between_tokens(response.output_text) == "", response.output_text


def test_flexible_whitespace_lets_the_model_pad(flexible: openai.OpenAI) -> None:
    # NOTE: padding may use up max_tokens (the reason compact is the default): partial JSON is fine
    arguments = [tool_arguments(flexible, seed, stream=True) for seed in SEEDS]
    contents = [schema_answer(flexible, seed, SCHEMA_FORMAT, whole=False) for seed in SEEDS]
    assert any(whitespace_between_tokens(text) for text in arguments), arguments
    assert any(whitespace_between_tokens(text) for text in contents), contents


def test_whitespace_helper_ignores_strings() -> None:
    assert whitespace_between_tokens('{"a b":"c\\" d","e":[1,2]}') == ""
    assert whitespace_between_tokens('{"a": [1, 2]}') == "  "


def test_every_json_of_a_lark_grammar_gets_the_options() -> None:
    tools = [{"name": "a", "parameters": WEATHER}, {"name": "b"}]
    lark = forced_calls_lark(MISTRAL_ARGS, tools, parallel=True)  # one %json per tool
    compact_lark = lark_json_options(lark, "compact")
    assert compact_lark.count('"x-guidance": {"whitespace_flexible": false') == 2
    assert '"whitespace_flexible": true' in lark_json_options(lark, "flexible")
    own = 'start: %json {"type": "object", "x-guidance": {"whitespace_flexible": true}}'
    assert '"whitespace_flexible": true' in lark_json_options(own, "compact")  # the schema's wins
    assert lark_json_options("start: %json {not json", "compact") == "start: %json {not json"

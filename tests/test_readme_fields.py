"""The README's lists of request fields are what the server does.

Each field the README names as supported gets a 200, each one it names as accepted and ignored a
200, each one it names as refused a 400 whose `param` names it: sent over HTTP to a real server
running the built-in model. Every field the request schemas declare is in one of the lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer
from pydantic import BaseModel

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, ServerConfig
from llmserve.serving.schemas import ChatCompletionRequest, CompletionRequest

README = Path(__file__).resolve().parents[1] / "README.md"
HEADINGS = {
    "Supported request fields:": "supported",
    "Accepted and ignored:": "ignored",
    "Refused with a 400 naming the field:": "refused",
}
ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
SCHEMAS: dict[str, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
}
_BULLET = re.compile(r"^- `(\w+)`(?: \((chat|completions)\))?")

MODEL = "tiny-local"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 8}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]
BASE: dict[str, dict[str, Any]] = {
    "chat": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
    "completions": {"model": MODEL, "prompt": "Hi", "max_tokens": 3},
}
# What each field is sent with: the body's extra fields (some need a companion to mean anything).
SAMPLES: dict[str, dict[str, Any]] = {
    "model": {},
    "messages": {"messages": CONVERSATION},
    "prompt": {"prompt": ["Hi", "Ho"]},
    "max_tokens": {"max_tokens": 2},
    "max_completion_tokens": {"max_completion_tokens": 2},
    "temperature": {"temperature": 0.5},
    "top_p": {"top_p": 0.9},
    "n": {"n": 2},
    "stop": {"stop": ["\n", "."]},
    "seed": {"seed": 7},
    "presence_penalty": {"presence_penalty": 0.5},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "stream": {"stream": True},
    "stream_options": {"stream": True, "stream_options": {"include_usage": True}},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"logprobs": True, "top_logprobs": 2},
    "echo": {"echo": True},
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tools": [TOOL], "tool_choice": "required", "max_tokens": 40},
    "parallel_tool_calls": {"tools": [TOOL], "parallel_tool_calls": False},
    "response_format": {"response_format": {"type": "json_object"}},
    "structured_outputs": {"structured_outputs": {"choice": ["yes", "no"]}},
    "cache_salt": {"cache_salt": "salt"},
    "prompt_cache_key": {"prompt_cache_key": "key"},
    "prediction": {"prediction": {"type": "content", "content": "Hello there"}},
    "top_k": {"top_k": 5},
    "min_p": {"min_p": 0.1},
    "repetition_penalty": {"repetition_penalty": 1.1},
    "stop_token_ids": {"stop_token_ids": [2]},
    "ignore_eos": {"ignore_eos": True},
    "user": {"user": "someone"},
    "metadata": {"metadata": {"team": "a"}},
    "store": {"store": True},
    "service_tier": {"service_tier": "auto"},
    "logit_bias": {"logit_bias": {"1": 5}},
    "functions": {"functions": [{"name": "f", "parameters": {}}]},
    "function_call": {"function_call": {"name": "f"}},
    "suffix": {"suffix": "the end"},
    "best_of": {"best_of": 3},
}
ENDPOINT_SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("completions", "logprobs"): {"logprobs": 2},
}


def readme_fields() -> dict[str, list[tuple[str, str]]]:
    """Each README list (supported, ignored, refused) as (field, endpoint) pairs."""
    lists: dict[str, list[tuple[str, str]]] = {kind: [] for kind in HEADINGS.values()}
    kind = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line in HEADINGS:
            kind = HEADINGS[line]
        elif kind and (found := _BULLET.match(line)):
            name, only = found.groups()
            lists[kind] += [(name, e) for e in ENDPOINTS if only in (None, e)]
        elif kind and line and not line.startswith("  "):
            kind = None  # the list ended
    return lists


def body_for(name: str, endpoint: str) -> dict[str, Any]:
    extra = ENDPOINT_SAMPLES.get((endpoint, name), SAMPLES[name])
    return {**BASE[endpoint], **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("readme-fields-home")
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL, max_model_len=1024)
    engine = EngineConfig(kv_cache_memory_mb=32, max_num_seqs=8)
    config = ServerConfig(models=(model,), home=home, engine=engine)
    app = create_app(config, {MODEL: LocalBackend(model, engine, home)}, build_gatekeeper(config))
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as client:
        yield client


def test_the_readme_lists_every_declared_field_once() -> None:
    lists = readme_fields()
    assert all(lists.values()), f"a README list is missing or empty: {lists}"
    listed = [pair for pairs in lists.values() for pair in pairs]
    assert len(listed) == len(set(listed)), "a field is listed twice"
    for endpoint, schema in SCHEMAS.items():
        declared = {f.alias or name for name, f in schema.model_fields.items()}
        named = {name for name, e in listed if e == endpoint}
        assert named == declared, f"{endpoint}: README lists {named ^ declared} wrongly"


@pytest.mark.slow
def test_supported_and_ignored_fields_get_200(server: httpx.Client) -> None:
    lists = readme_fields()
    for name, endpoint in lists["supported"] + lists["ignored"]:
        response = server.post(ENDPOINTS[endpoint], json=body_for(name, endpoint))
        assert response.status_code == 200, (name, endpoint, response.text)
        if response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.endswith("data: [DONE]\n\n") and '"error"' not in response.text
        else:
            assert response.json()["choices"], (name, endpoint)


@pytest.mark.slow
def test_refused_fields_get_400_naming_them(server: httpx.Client) -> None:
    for name, endpoint in readme_fields()["refused"]:
        response = server.post(ENDPOINTS[endpoint], json=body_for(name, endpoint))
        assert response.status_code == 400, (name, endpoint, response.text)
        error = response.json()["error"]
        assert error["param"] == name and f"`{name}`" in error["message"], error


@pytest.mark.slow
def test_developer_role_is_served(server: httpx.Client) -> None:
    developer = {"role": "developer", "content": "Be brief."}
    body = {**BASE["chat"], "messages": [developer, *BASE["chat"]["messages"]]}
    response = server.post(ENDPOINTS["chat"], json=body)
    assert response.status_code == 200, response.text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "function", "content": "x"}, "messages.0.role"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, None),
    ],
)
def test_other_roles_and_parts_are_refused(
    server: httpx.Client, message: dict[str, Any], param: str | None
) -> None:
    response = server.post(ENDPOINTS["chat"], json={**BASE["chat"], "messages": [message]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].startswith(param or "messages.0.content"), error


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "param"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f-1"}]}]},
            "input",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
def test_responses_refusals_the_readme_names(
    server: httpx.Client, field: dict[str, Any], param: str
) -> None:
    """README, Responses API: an image or file part is a 400 naming `input`; a tool other than
    a function is a 400 naming `tools[i].type`."""
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 3, **field}
    response = server.post("/v1/responses", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param

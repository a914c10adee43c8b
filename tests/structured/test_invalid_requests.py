"""Bad schemas, grammars and tool definitions: OpenAI's 400 bodies; nothing reaches a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig
from llmserve.types import GenerateOutput, GenerateRequest

MODEL = "fake-model"
USER = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class CountingBackend(FakeBackend):
    """The fake model, counting the requests that reached it."""

    def __init__(self) -> None:
        super().__init__(MODEL)
        self.generated: list[GenerateRequest] = []

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.generated.append(request)
        return super().generate(request)


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
async def client(backend: CountingBackend) -> AsyncIterator[httpx.AsyncClient]:
    config = ServerConfig(models=(ModelConfig(MODEL, source="fake", backend="fake"),))
    app = create_app(config, {MODEL: backend}, OpenGatekeeper())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def schema_format(schema: object) -> dict[str, object]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        (
            {"response_format": schema_format({"type": "foo"})},
            "response_format",
            "Invalid schema for response_format 'answer': ",
        ),
        (
            {"response_format": schema_format({"type": "string", "pattern": "[a-"})},
            "response_format",
            "Invalid schema for response_format 'answer': ",
        ),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "Missing required parameter: 'response_format.json_schema'.",
        ),
        ({"structured_outputs": {"regex": "[a-"}}, "structured_outputs", "Invalid "),
        ({"structured_outputs": {"grammar": "start: nope"}}, "structured_outputs", "Invalid "),
        (
            {"structured_outputs": {"regex": "a", "choice": ["a"]}},
            "structured_outputs",
            "`structured_outputs` must set exactly one of",
        ),
        (
            {"tools": [{**WEATHER, "function": {"name": "f", "parameters": {"type": "nope"}}}]},
            "tools",
            "Invalid tools: ",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools", ""),
        ({"tools": [{"type": "function", "function": {}}]}, "tools", ""),
        ({"tools": [{"type": "retrieval"}]}, "tools", ""),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
            "Invalid value for 'tool_choice': no function named 'x' was specified",
        ),
        (
            {"tool_choice": "required"},
            "tool_choice",
            "`tool_choice` is only allowed when `tools` are specified.",
        ),
        (
            {"messages": [*USER, {"role": "tool", "content": "42"}]},
            "messages.[1].tool_call_id",
            "Missing parameter 'tool_call_id'",
        ),
    ],
)
async def test_invalid_constraint_is_400_and_never_generates(
    client: httpx.AsyncClient,
    backend: CountingBackend,
    extra: dict[str, object],
    param: str,
    message: str,
) -> None:
    body = {"model": MODEL, "messages": USER, **extra}
    for stream in (False, True):
        response = await client.post("/v1/chat/completions", json={**body, "stream": stream})
        assert response.status_code == 400
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert error["param"] is not None and error["param"].startswith(param)
        assert error["message"].startswith(message)
    assert backend.generated == []


async def test_schema_error_names_the_problem(client: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": USER, "response_format": schema_format({"type": "foo"})}
    error = (await client.post("/v1/chat/completions", json=body)).json()["error"]
    assert "foo" in error["message"]


async def test_valid_constraint_reaches_the_backend_with_its_grammar(
    client: httpx.AsyncClient, backend: CountingBackend
) -> None:
    body = {"model": MODEL, "messages": USER, "structured_outputs": {"choice": ["a", "b"]}}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    [request] = backend.generated
    assert request.grammar is not None and request.grammar.kind == "choice"

"""A tool whose parameters are a deep `$ref` chain: a 400 on `tools`, before any compile.

The tools' call grammar embeds each schema as Lark `%json {...}` under `properties.arguments`;
the depth check reads those blocks too. The chain is written with pointers that resolve there,
as an attacker would write it (a plain `#/$defs/...` does not resolve once embedded).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from deep_grammars import ref_chain_schema
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

MODEL = "fake-model"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    config = ServerConfig(models=(ModelConfig(MODEL, source="fake", backend="fake"),))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, OpenGatekeeper())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
async def test_deep_tool_parameters_are_a_400_on_tools(
    client: httpx.AsyncClient, tool_choice: str
) -> None:
    embedded = json.dumps(ref_chain_schema(1000)).replace(
        "#/$defs/", "#/properties/arguments/$defs/"
    )
    tool = {"type": "function", "function": {"name": "deep", "parameters": json.loads(embedded)}}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "tools": [tool],
            "tool_choice": tool_choice}  # fmt: skip
    reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "tools"
    assert "too deeply nested" in error["message"]

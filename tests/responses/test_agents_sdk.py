"""The OpenAI Agents SDK (`openai-agents`) runs an agent with one function tool against the
built-in model: the forced call's arguments parse, its output goes back as a
`function_call_output`, and the run ends with a final answer; with and without a conversation
session kept on the server."""

from __future__ import annotations

import json
from typing import Annotated

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIConversationsSession,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.items import ToolCallItem, ToolCallOutputItem
from pydantic import BaseModel, Field
from responses_helpers import MODEL, ResponsesServer

CALLS: list[str] = []


@function_tool
def get_weather(city: Annotated[str, Field(max_length=12)]) -> str:
    """The weather in a city."""
    CALLS.append(city)
    return f"Sunny in {city}."


class WeatherReport(BaseModel):
    """The agent's final answer (structured: the built-in model's free text never ends)."""

    summary: str = Field(max_length=12)


def sdk(server: ResponsesServer) -> openai.AsyncOpenAI:
    set_tracing_disabled(True)  # nothing leaves this machine
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=server.alice, max_retries=0)


def weather_agent(client: openai.AsyncOpenAI) -> Agent[None]:
    return Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
        model_settings=ModelSettings(
            tool_choice="required", parallel_tool_calls=False, max_tokens=512
        ),
        output_type=WeatherReport,
    )


def check_tool_run(result: object) -> None:
    items = result.new_items  # type: ignore[attr-defined]
    calls = [item for item in items if isinstance(item, ToolCallItem)]
    outputs = [item for item in items if isinstance(item, ToolCallOutputItem)]
    assert calls and outputs
    arguments = json.loads(calls[0].raw_item.arguments)  # type: ignore[union-attr]
    assert isinstance(arguments["city"], str)
    assert outputs[0].output == f"Sunny in {arguments['city']}."
    assert isinstance(result.final_output, WeatherReport)  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_an_agent_calls_its_tool_and_ends_with_an_answer(
    responses_server: ResponsesServer,
) -> None:
    CALLS.clear()
    async with sdk(responses_server) as client:
        result = await Runner.run(weather_agent(client), "Weather in Paris?", max_turns=4)
    check_tool_run(result)
    assert CALLS


@pytest.mark.slow
async def test_an_agent_with_a_conversations_session(responses_server: ResponsesServer) -> None:
    async with sdk(responses_server) as client:
        session = OpenAIConversationsSession(openai_client=client)
        result = await Runner.run(
            weather_agent(client), "Weather in Rome?", max_turns=4, session=session
        )
        check_tool_run(result)
        kept = await session.get_items()
        kinds = [item.get("type", "message") for item in kept]  # type: ignore[union-attr]
        assert "function_call" in kinds and "function_call_output" in kinds
        conversation_id = await session._get_session_id()
        listed = await client.conversations.items.list(conversation_id, limit=100)
        assert len(listed.data) == len(kept)

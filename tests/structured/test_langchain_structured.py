"""LangChain's ChatOpenAI tools and structured output against the real engine (random model)."""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ConfigDict, Field

from .conftest import MODEL

pytestmark = pytest.mark.slow


class GetWeather(BaseModel):
    """Get the weather in a city."""

    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=12)
    unit: Literal["celsius", "fahrenheit"]


class Answer(BaseModel):
    """A short answer and how sure the model is."""

    model_config = ConfigDict(extra="forbid")
    answer: str = Field(max_length=16)
    confidence: int = Field(ge=0, le=10)


@pytest.fixture
def chat(base_url: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL, base_url=base_url, api_key="anonymous", seed=5, max_tokens=200, max_retries=0
    )


@pytest.mark.parametrize("tool_choice", ["any", "GetWeather"])
def test_bind_tools_with_a_forced_choice_returns_a_valid_call(
    chat: ChatOpenAI, tool_choice: str
) -> None:
    message = chat.bind_tools([GetWeather], tool_choice=tool_choice).invoke("Weather in Paris?")
    assert message.tool_calls
    for call in message.tool_calls:
        assert call["name"] == "GetWeather"
        GetWeather.model_validate(call["args"])
        assert call["id"] and call["id"].startswith("call_")


def test_with_structured_output_returns_the_model(chat: ChatOpenAI) -> None:
    result = chat.with_structured_output(Answer).invoke("Capital of France?")
    assert isinstance(result, Answer)


def test_tool_round_trip(chat: ChatOpenAI) -> None:
    question = HumanMessage("Weather in Paris?")
    call_message = chat.bind_tools([GetWeather], tool_choice="GetWeather").invoke([question])
    [call] = call_message.tool_calls
    result = ToolMessage(content="Sunny, 21 degrees", tool_call_id=call["id"])
    brief = chat.model_copy(update={"max_tokens": 16})  # the random model's answer is noise
    answer = brief.bind_tools([GetWeather]).invoke([question, call_message, result])
    assert answer.response_metadata["finish_reason"] in ("stop", "length", "tool_calls")
    assert isinstance(answer.content, str)

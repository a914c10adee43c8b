"""OpenAI request shapes for structured output and tools: `response_format`, `tools`,
`tool_choice`, assistant tool calls and tool messages, and vLLM's `structured_outputs` extra.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from llmserve.serving.strict import StrictModel

# OpenAI's rule for function and schema names.
Name = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class JsonSchemaFormat(StrictModel):
    """`response_format.json_schema`."""

    name: Name
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(StrictModel):
    """`response_format`: plain text, any JSON object, or JSON that follows a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(StrictModel):
    """vLLM's `structured_outputs` extra: exactly one constraint."""

    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: Annotated[list[str], Field(min_length=1)] | None = None
    grammar: str | None = None  # Lark (llguidance's dialect, which also reads GBNF-like rules)


class FunctionDefinition(StrictModel):
    """A function the model may call; `parameters` is a JSON schema of its arguments."""

    name: Name
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(StrictModel):
    name: str


class NamedToolChoice(StrictModel):
    """`tool_choice: {"type": "function", "function": {"name": ...}}`."""

    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(StrictModel):
    name: str
    arguments: str


class MessageToolCall(StrictModel):
    """A call in an assistant message of the history."""

    id: str
    type: Literal["function"] = "function"
    function: CalledFunction

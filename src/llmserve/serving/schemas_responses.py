"""OpenAI Responses API: the request body and its input items.

Input items are messages, the function calls an earlier turn made and their outputs, so a tool
loop can resend its whole history or continue one by `previous_response_id` or `conversation`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError

from llmserve.errors import InvalidRequestError
from llmserve.serving.schemas import ModelRequest, StrictModel
from llmserve.serving.schemas_cache import PromptCacheFields
from llmserve.serving.schemas_tools import (
    FunctionDefinition,
    FunctionName,
    JsonSchemaFormat,
    Name,
    NamedToolChoice,
    ResponseFormat,
    Tool,
    ToolChoice,
)

_TEXT_PART_TYPES = ("input_text", "output_text", "text", "refusal")


class ContentPart(StrictModel):
    """One part of a message item; only text parts are supported."""

    type: str
    text: str | None = None
    refusal: str | None = None


class InputMessage(StrictModel):
    """A message item of `input`: role and string-or-parts content."""

    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    status: str | None = None

    def text(self, param: str) -> str:
        """The item's text; a non-text part (an image, a file) is a 400 naming `param`."""
        if isinstance(self.content, str):
            return self.content
        for part in self.content:
            if part.type not in _TEXT_PART_TYPES:
                raise InvalidRequestError(
                    f"Content parts of type `{part.type}` are not supported by this server's "
                    "models; send `input_text`.",
                    param=param,
                )
        return "".join(p.text or p.refusal or "" for p in self.content)


class FunctionCallItem(StrictModel):
    """A `function_call` the model made in an earlier turn."""

    type: Literal["function_call"]
    id: str | None = None
    call_id: str
    name: str
    arguments: str
    status: str | None = None


class FunctionCallOutputItem(StrictModel):
    """`function_call_output`: what the caller's function returned for `call_id`."""

    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str
    output: str | list[ContentPart]
    status: str | None = None

    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(p.text or "" for p in self.output)


class CompactionItem(StrictModel):
    """`compaction`: what `/v1/responses/compact` made of the turns it replaced (opaque)."""

    type: Literal["compaction"]
    id: str | None = None
    encrypted_content: str


class ItemReference(StrictModel):
    """`item_reference`: an item of the conversation or an earlier response, by id."""

    type: Literal["item_reference"]
    id: str


_ITEM_TYPES = ("message", "function_call", "function_call_output", "compaction", "item_reference")


def _item_tag(item: Any) -> str | None:
    """Which member an item is, by its `type` (a message may leave it out): errors then come
    from that member alone, never from whichever member pydantic tried last."""
    kind = item.get("type", "message") if isinstance(item, dict) else getattr(item, "type", None)
    return f"item-{kind}" if kind in _ITEM_TYPES else None


InputItem = Annotated[
    Annotated[InputMessage, Tag("item-message")]
    | Annotated[FunctionCallItem, Tag("item-function_call")]
    | Annotated[FunctionCallOutputItem, Tag("item-function_call_output")]
    | Annotated[CompactionItem, Tag("item-compaction")]
    | Annotated[ItemReference, Tag("item-item_reference")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_input_item",
        custom_error_message=(
            "Input items are objects of type message (with role and content), function_call, "
            "function_call_output, compaction or item_reference"
        ),
    ),
]


class FunctionTool(StrictModel):
    """A function tool in the Responses API's flat shape."""

    type: Literal["function"]
    name: Name
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def as_chat_tool(self) -> Tool:
        function = FunctionDefinition(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            strict=self.strict,
        )
        return Tool(type="function", function=function)


class FunctionToolChoice(StrictModel):
    """`tool_choice: {"type": "function", "name": ...}`."""

    type: Literal["function"]
    name: str


class TextFormat(StrictModel):
    """`text.format`: the Responses API's flat form of `response_format`."""

    type: Literal["text", "json_object", "json_schema"]
    name: Name | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    def as_response_format(self) -> ResponseFormat:
        """The same constraint in chat completions' shape."""
        if self.type != "json_schema":
            return ResponseFormat(type=self.type)
        if self.name is None:
            raise InvalidRequestError(
                "Missing required parameter: 'text.format.name'.", param="text.format.name"
            )
        schema = JsonSchemaFormat(name=self.name, schema=self.schema_, strict=self.strict)
        return ResponseFormat(type="json_schema", json_schema=schema)


class TextConfig(StrictModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ConversationRef(StrictModel):
    id: str


class ResponseInputFields(ModelRequest, PromptCacheFields):
    """What a response reads: input items, instructions, tools and the turns it continues."""

    input: str | Annotated[list[InputItem], Field(min_length=1)] = Field(default_factory=list)
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    tools: list[dict[str, Any]] | None = None  # read by `function_tools` (function tools only)
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = None
    parallel_tool_calls: bool = True

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation

    def function_tools(self) -> list[FunctionTool]:
        """`tools`, each a function tool; another kind (web search, files…) is a 400."""
        tools = []
        for position, tool in enumerate(self.tools or ()):
            kind = tool.get("type")
            if kind != "function":
                raise InvalidRequestError(
                    f"Tools of type `{kind}` are not supported by this server; only `function` "
                    "tools are.",
                    param=f"tools[{position}].type",
                )
            try:
                tools.append(FunctionTool.model_validate(tool))
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"])
                raise InvalidRequestError(
                    f"Invalid tool: {where}: {error['msg']}", param=f"tools[{position}]"
                ) from None
        return tools

    def chat_tools(self) -> list[Tool] | None:
        """`tools` in chat completions' shape (for the template, grammars and parsing)."""
        return [tool.as_chat_tool() for tool in self.function_tools()] or None

    def chat_tool_choice(self) -> ToolChoice | None:
        """`tool_choice` in chat completions' shape."""
        if isinstance(self.tool_choice, FunctionToolChoice):
            return NamedToolChoice(
                type="function", function=FunctionName(name=self.tool_choice.name)
            )
        return self.tool_choice


class ResponseCreateRequest(ResponseInputFields):
    """POST /v1/responses."""

    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    store: bool = True
    background: bool = False
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: dict[str, Any] | None = None

    def reject_unsupported(self) -> None:
        """Raise a 400 naming the first unsupported feature that was asked for."""
        if self.background and not self.store:
            raise InvalidRequestError(
                "Background responses must be stored: send `store: true` (the default) with "
                "`background: true`.",
                param="background",
            )
        if self.previous_response_id is not None and self.conversation is not None:
            raise InvalidRequestError(
                "Mutually exclusive parameters: send either `previous_response_id` or "
                "`conversation`, not both.",
                param="conversation",
            )
        if not self.input:
            raise InvalidRequestError("Missing required parameter: 'input'.", param="input")


class CompactRequest(ResponseInputFields):
    """POST /v1/responses/compact: the turns to compact (input and/or a previous response)."""

    def reject_unsupported(self) -> None:
        if self.previous_response_id is None and not self.input:
            raise InvalidRequestError(
                "Send `input` or `previous_response_id`: there is nothing to compact.",
                param="input",
            )


class InputTokensRequest(ResponseInputFields):
    """POST /v1/responses/input_tokens: the prompt a response would have, counted."""

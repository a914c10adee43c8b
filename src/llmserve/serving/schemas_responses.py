"""OpenAI Responses API: the request, and the Response object and stream events it answers with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from llmserve.errors import InvalidRequestError
from llmserve.serving.schemas import ModelRequest, StrictModel
from llmserve.serving.schemas_cache import PromptCacheFields
from llmserve.serving.schemas_tools import JsonSchemaFormat, Name, ResponseFormat
from llmserve.types import ChatMessage

_TEXT_PART_TYPES = ("input_text", "output_text", "text")


class ContentPart(StrictModel):
    """One part of a message item; only text parts are supported."""

    type: str
    text: str | None = None


class InputMessage(StrictModel):
    """A message item of `input`: role and string-or-parts content."""

    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def to_chat_message(self) -> ChatMessage:
        """The item as a plain-text chat message; a non-text part is a 400."""
        if isinstance(self.content, str):
            return ChatMessage(role=self._chat_role, content=self.content)
        for part in self.content:
            if part.type not in _TEXT_PART_TYPES or part.text is None:
                raise InvalidRequestError(
                    f"Content parts of type `{part.type}` are not supported; send `input_text`.",
                    param="input",
                )
        return ChatMessage(
            role=self._chat_role, content="".join(p.text or "" for p in self.content)
        )

    @property
    def _chat_role(self) -> str:
        return "system" if self.role == "developer" else self.role


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


class ResponseCreateRequest(ModelRequest, PromptCacheFields):
    """POST /v1/responses."""

    input: str | Annotated[list[InputMessage], Field(min_length=1)]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False
    store: bool = True
    background: bool = False
    previous_response_id: str | None = None
    tools: list[Any] | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None

    def reject_unsupported(self) -> None:
        """Raise a 400 naming the first unsupported feature that was asked for."""
        if self.background and not self.store:
            raise InvalidRequestError(
                "Background responses must be stored: send `store: true` (the default) with "
                "`background: true`.",
                param="background",
            )
        if self.tools:
            raise InvalidRequestError("`tools` are not supported by this server.", param="tools")

    def input_messages(self) -> list[ChatMessage]:
        """The input items as chat messages (without the instructions)."""
        if isinstance(self.input, str):
            return [ChatMessage("user", self.input)]
        return [item.to_chat_message() for item in self.input]

    def chat_messages(self, history: Sequence[ChatMessage] = ()) -> list[ChatMessage]:
        """Instructions (as the system message), the earlier conversation, then the input items.

        NOTE: instructions are never carried over from a previous response (OpenAI's rule).
        """
        messages = [ChatMessage("system", self.instructions)] if self.instructions else []
        return [*messages, *history, *self.input_messages()]

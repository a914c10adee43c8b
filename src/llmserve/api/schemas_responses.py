"""OpenAI Responses API: the request, and the Response object and stream events it answers with."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmserve.api.schemas import ModelRequest
from llmserve.backends.base import ChatMessage
from llmserve.errors import InvalidRequestError

_TEXT_PART_TYPES = ("input_text", "output_text", "text")


class ContentPart(BaseModel):
    """One part of a message item; only text parts are supported."""

    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class InputMessage(BaseModel):
    """A message item of `input`: role and string-or-parts content."""

    model_config = ConfigDict(extra="ignore")

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


class ResponseCreateRequest(ModelRequest):
    """POST /v1/responses."""

    input: str | list[InputMessage]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False
    store: bool = True
    background: bool = False
    previous_response_id: str | None = None
    tools: list[Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None

    def reject_unsupported(self) -> None:
        """Raise a 400 naming the first unsupported feature that was asked for."""
        if self.background:
            raise InvalidRequestError(
                "Background responses (`background: true`) come with the async-jobs feature, "
                "which this server does not have yet. Send the request without `background`.",
                param="background",
            )
        if self.tools:
            raise InvalidRequestError("`tools` are not supported by this server.", param="tools")
        if self.previous_response_id is not None:
            raise InvalidRequestError(
                "`previous_response_id` is not supported; send the conversation in `input`.",
                param="previous_response_id",
            )

    def chat_messages(self) -> list[ChatMessage]:
        """Instructions (as the system message) followed by the input items."""
        messages = [ChatMessage("system", self.instructions)] if self.instructions else []
        if isinstance(self.input, str):
            return [*messages, ChatMessage("user", self.input)]
        if not self.input:
            raise InvalidRequestError("`input` must not be empty.", param="input")
        return messages + [item.to_chat_message() for item in self.input]


def output_message(item_id: str, text: str, status: str) -> dict[str, Any]:
    """The assistant message output item."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [output_text_part(text)] if status == "completed" else [],
    }


def output_text_part(text: str) -> dict[str, Any]:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """Responses API usage."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    response_id: str,
    request: ResponseCreateRequest,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage_body: dict[str, Any] | None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """The `response` object, as returned by create and GET and carried by stream events."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": (
            {"reason": incomplete_reason} if incomplete_reason is not None else None
        ),
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "usage": usage_body,
        "metadata": request.metadata or {},
        "user": request.user,
    }

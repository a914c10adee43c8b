"""The Responses API's objects: the `response`, its output message item, text part and usage."""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from llmserve.serving.schemas_responses import ResponseCreateRequest


class OutputTextPart(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[object]
    logprobs: list[object]


class OutputMessage(TypedDict):
    """The assistant message output item."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    status: str
    content: list[OutputTextPart]


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class ResponseObject(TypedDict):
    """The `response` object, as returned by create and GET and carried by stream events."""

    id: str
    object: Literal["response"]
    created_at: int
    status: str
    error: dict[str, str] | None
    incomplete_details: dict[str, str] | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputMessage]
    parallel_tool_calls: bool
    previous_response_id: str | None
    store: bool
    background: bool
    temperature: float
    top_p: float
    text: dict[str, dict[str, Any]]
    tool_choice: str
    tools: list[object]
    truncation: str
    usage: ResponseUsage | None
    metadata: dict[str, str]
    user: str | None


class ResponseEvent(TypedDict, total=False):
    """One event of a streamed response; which fields it has depends on its `type`."""

    type: str
    sequence_number: int
    response: ResponseObject
    item: OutputMessage
    part: OutputTextPart
    item_id: str
    output_index: int
    content_index: int
    delta: str
    text: str
    logprobs: list[object]


def output_message(item_id: str, text: str, status: str) -> OutputMessage:
    """The assistant message output item."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [output_text_part(text)] if status == "completed" else [],
    }


def output_text_part(text: str) -> OutputTextPart:
    """An `output_text` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def usage(
    input_tokens: int, output_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
) -> ResponseUsage:
    """Responses API usage (`cache_write_tokens`: prompt tokens newly written to the cache)."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cached_tokens,
            "cache_write_tokens": cache_write_tokens,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    response_id: str,
    request: ResponseCreateRequest,
    *,
    status: str,
    output: list[OutputMessage],
    usage_body: ResponseUsage | None,
    incomplete_reason: str | None = None,
) -> ResponseObject:
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
        "previous_response_id": request.previous_response_id,
        "store": request.store,
        "background": request.background,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "text": {"format": text_format(request)},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "usage": usage_body,
        "metadata": request.metadata or {},
        "user": request.user,
    }


def text_format(request: ResponseCreateRequest) -> dict[str, Any]:
    """`text.format` as the request set it (`{"type": "text"}` by default)."""
    if request.text is None or request.text.format is None:
        return {"type": "text"}
    return request.text.format.model_dump(by_alias=True, exclude_none=True)

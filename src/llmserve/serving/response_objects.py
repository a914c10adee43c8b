"""The Responses API's objects: the `response` (every field the Open Responses specification
requires), its output items, text part and usage."""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from llmserve.serving.schemas_responses import ResponseCreateRequest
from llmserve.statuses import ENDED_RESPONSE_STATUSES, ResponseStatus

Item = dict[str, Any]


class OutputTextPart(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[object]
    logprobs: list[object]


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
    completed_at: int | None
    status: ResponseStatus
    error: dict[str, str] | None
    incomplete_details: dict[str, str] | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    model: str
    output: list[Item]
    parallel_tool_calls: bool
    previous_response_id: str | None
    conversation: dict[str, str] | None
    store: bool
    background: bool
    temperature: float
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    top_logprobs: int
    reasoning: dict[str, object] | None
    text: dict[str, Any]
    tool_choice: object
    tools: list[object]
    truncation: str
    usage: ResponseUsage | None
    metadata: dict[str, str]
    user: str | None
    service_tier: str
    safety_identifier: str | None
    prompt_cache_key: str | None


class ResponseEvent(TypedDict, total=False):
    """One event of a streamed response; which fields it has depends on its `type`."""

    type: str
    sequence_number: int
    response: ResponseObject
    item: Item
    part: OutputTextPart
    item_id: str
    output_index: int
    content_index: int
    delta: str
    text: str
    arguments: str
    name: str
    logprobs: list[object]


def output_message(item_id: str, text: str, status: str) -> Item:
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
    """Responses API usage (cached: read from the prefix cache; written: newly cached)."""
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
    status: ResponseStatus,
    output: list[Item],
    usage_body: ResponseUsage | None,
    incomplete_reason: str | None = None,
    created_at: int | None = None,
) -> ResponseObject:
    """The `response` object, as returned by create and GET and carried by stream events."""
    now = int(time.time())
    is_done = status in ENDED_RESPONSE_STATUSES
    conversation = request.conversation_id
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at or now,
        "completed_at": now if status == "completed" else None,
        "status": status,
        "error": None,
        "incomplete_details": (
            {"reason": incomplete_reason} if incomplete_reason is not None and is_done else None
        ),
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "conversation": {"id": conversation} if conversation else None,
        "store": request.store,
        "background": request.background,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "top_logprobs": request.top_logprobs or 0,
        "reasoning": {"effort": None, "summary": None},
        "text": {"format": text_format(request), "verbosity": "medium"},
        "tool_choice": tool_choice(request),
        "tools": [t.model_dump(exclude_none=True) for t in request.function_tools()],
        "truncation": request.truncation or "disabled",
        "usage": usage_body,
        "metadata": request.metadata or {},
        "user": request.user,
        "service_tier": "default",
        "safety_identifier": request.safety_identifier,
        "prompt_cache_key": request.prompt_cache_key,
    }


def tool_choice(request: ResponseCreateRequest) -> object:
    """`tool_choice` as the request set it (`auto` by default)."""
    if request.tool_choice is None:
        return "auto"
    if isinstance(request.tool_choice, str):
        return request.tool_choice
    return request.tool_choice.model_dump()


def text_format(request: ResponseCreateRequest) -> dict[str, Any]:
    """`text.format` as the request set it (`{"type": "text"}` by default)."""
    if request.text is None or request.text.format is None:
        return {"type": "text"}
    return request.text.format.model_dump(by_alias=True, exclude_none=True)

"""Checks of Responses API objects against the Open Responses specification.

The specification's `ResponseResource` requires these fields (its schema's `required` list);
each stream event is checked against the openai SDK's own event models, strictly (pydantic
validation of every field the SDK declares required), and the response it carries against both.
"""

from __future__ import annotations

from typing import Any

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

RESPONSE_REQUIRED = (
    "id", "object", "created_at", "completed_at", "status", "incomplete_details", "model",
    "previous_response_id", "instructions", "output", "error", "tools", "tool_choice",
    "truncation", "parallel_tool_calls", "text", "top_p", "presence_penalty",
    "frequency_penalty", "top_logprobs", "temperature", "reasoning", "user", "usage",
    "max_output_tokens", "max_tool_calls", "store", "background", "service_tier", "metadata",
    "safety_identifier", "prompt_cache_key",
)  # fmt: skip
USAGE_REQUIRED = ("input_tokens", "input_tokens_details", "output_tokens",
                  "output_tokens_details", "total_tokens")  # fmt: skip
EVENTS = TypeAdapter(ResponseStreamEvent)


def check_response(body: dict[str, Any]) -> None:
    """Every field the specification requires, with its JSON type; the SDK's model validates."""
    missing = [name for name in RESPONSE_REQUIRED if name not in body]
    assert not missing, f"response lacks {missing}"
    assert body["object"] == "response"
    assert isinstance(body["created_at"], int)
    assert body["completed_at"] is None or isinstance(body["completed_at"], int)
    for name in ("top_p", "presence_penalty", "frequency_penalty", "temperature"):
        assert isinstance(body[name], int | float), name
    assert isinstance(body["top_logprobs"], int)
    assert isinstance(body["service_tier"], str)
    assert isinstance(body["parallel_tool_calls"], bool)
    usage = body["usage"]
    if usage is not None:
        assert all(name in usage for name in USAGE_REQUIRED)
        details = usage["input_tokens_details"]
        assert isinstance(details["cached_tokens"], int)
        assert isinstance(details["cache_write_tokens"], int)
        assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
    for item in body["output"]:
        assert isinstance(item["id"], str) and item["type"] in ("message", "function_call")
    Response.model_validate(body)


def check_event(event: dict[str, Any]) -> None:
    """A stream event: the SDK's model of its type validates; a carried response is checked."""
    assert isinstance(event["sequence_number"], int)
    EVENTS.validate_python(event)
    if "response" in event:
        check_response(event["response"])

"""Tool calls in chat answers: a choice's text read as content and `tool_calls`, whole or as
the deltas OpenAI streams (first a call's index, id, type, name and `arguments: ""`, then
argument fragments that are exact slices of the final arguments).
"""

from __future__ import annotations

import secrets

from llmserve.serving.constraints import ToolPlan
from llmserve.serving.wire import AssistantMessage, ChatDelta, ToolCallBody, ToolCallDelta
from llmserve.structured.tool_formats import ToolCallFormat
from llmserve.structured.tool_parser import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    ToolCallParser,
    ToolEvent,
    parse_tool_calls,
)
from llmserve.types import FinishReason


def new_call_id() -> str:
    """A tool-call id in OpenAI's shape: `call_` and 24 characters."""
    return f"call_{secrets.token_hex(12)}"


def message_with_calls(text: str, plan: ToolPlan) -> AssistantMessage:
    """The assistant message of a whole answer, its calls parsed out of `text`."""
    call_format = _format(plan)
    parsed = parse_tool_calls(call_format, text)
    calls = parsed.calls[: plan.max_calls] if plan.max_calls else parsed.calls
    message: AssistantMessage = {"role": "assistant", "content": parsed.content, "refusal": None}
    if calls:
        message["tool_calls"] = [_call_body(name, arguments) for name, arguments in calls]
    return message


def finish_reason_with_calls(reason: FinishReason | None, has_calls: bool) -> str | None:
    """`tool_calls` when a choice that ended by itself called tools (a cut one stays `length`)."""
    return "tool_calls" if has_calls and reason == "stop" else reason


def _call_body(name: str, arguments: str) -> ToolCallBody:
    return {
        "id": new_call_id(),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _format(plan: ToolPlan) -> ToolCallFormat:
    if plan.call_format is None:
        raise ValueError("this plan does not read tool calls")
    return plan.call_format


class ToolCallDeltas:
    """One choice's stream: text in, chat deltas out."""

    def __init__(self, plan: ToolPlan) -> None:
        self.parser = ToolCallParser(_format(plan))
        self.max_calls = plan.max_calls
        self.num_calls = 0

    def feed(self, text: str) -> list[ChatDelta]:
        return self._deltas(self.parser.feed(text))

    def finish(self) -> list[ChatDelta]:
        return self._deltas(self.parser.finish())

    def _deltas(self, events: list[ToolEvent]) -> list[ChatDelta]:
        deltas: list[ChatDelta] = []
        for event in events:
            delta = self._delta(event)
            if delta is not None:
                deltas.append(delta)
        return deltas

    def _delta(self, event: ToolEvent) -> ChatDelta | None:
        if isinstance(event, ContentDelta):
            return {"content": event.text}
        if self.max_calls is not None and event.index >= self.max_calls:
            return None  # parallel_tool_calls: false keeps the first call only
        if isinstance(event, CallStart):
            self.num_calls += 1
            first: ToolCallDelta = {
                "index": event.index,
                "id": new_call_id(),
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return {"tool_calls": [first]}
        assert isinstance(event, ArgumentsDelta)
        if not event.text:
            return None  # the call's first delta already carries `arguments: ""`
        return {"tool_calls": [{"index": event.index, "function": {"arguments": event.text}}]}

"""Tools for chat templates that cannot show them: llmserve's Hermes-style default.

A template that mentions `tools` renders them itself. Any other one (the built-in Llama-2 one)
gets the tool list in the system message, the assistant's calls as `<tool_call>` blocks and tool
results as a user turn of `<tool_response>` blocks: the format NousResearch's Hermes models use,
and the one `structured/tool_formats.py` forces and parses for such models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llmserve.types import ChatMessage

HERMES_SYSTEM_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within "
    "<tools></tools> XML tags. You may call one or more functions to assist with the user query. "
    "Here are the available tools: <tools>{tools}</tools>\n"
    "For each function call return a JSON object with the function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def template_supports_tools(chat_template: str) -> bool:
    """Whether the template renders a `tools` list itself."""
    return "tools" in chat_template


def hermes_messages(
    messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, str]]:
    """`messages` as plain role/content turns with tools, calls and results written in."""
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            block = f"<tool_response>\n{message.content}\n</tool_response>"
            if turns and turns[-1].get("is_tool_result"):
                turns[-1]["content"] += "\n" + block  # one user turn for a run of results
            else:
                turns.append({"role": "user", "content": block, "is_tool_result": "1"})
        else:
            turns.append({"role": message.role, "content": _with_calls(message)})
    for turn in turns:
        turn.pop("is_tool_result", None)
    return _with_tools(turns, tools) if tools else turns


def _with_calls(message: ChatMessage) -> str:
    blocks = [
        f'<tool_call>\n{{"name": {json.dumps(c.name)}, "arguments": {c.arguments or "{}"}}}'
        "\n</tool_call>"
        for c in message.tool_calls
    ]
    return "\n".join([message.content, *blocks] if message.content else blocks)


def _with_tools(
    turns: list[dict[str, str]], tools: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    prompt = HERMES_SYSTEM_PROMPT.format(tools=json.dumps(list(tools)))
    if turns and turns[0]["role"] == "system":
        return [{"role": "system", "content": f"{turns[0]['content']}\n\n{prompt}"}, *turns[1:]]
    return [{"role": "system", "content": prompt}, *turns]


def template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """`messages` in the shape tool-aware templates read (calls with their arguments parsed)."""
    return [_template_message(m) for m in messages]


def _template_message(message: ChatMessage) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        turn["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _parsed(c.arguments)},
            }
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    return turn


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments

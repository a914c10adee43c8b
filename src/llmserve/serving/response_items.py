"""Responses API items: input items as chat messages, and an answer as output items.

An item is the JSON the API shows (`message`, `function_call`, `function_call_output`); a chat
message is what the model's template renders. A conversation is kept as items, so that it can be
listed as the API shows it and rendered again for the next turn.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from typing import Any

from llmserve.errors import InvalidRequestError
from llmserve.serving.schemas_responses import (
    CompactionItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    InputMessage,
    ItemReference,
    ResponseInputFields,
)
from llmserve.types import ChatMessage, ToolCall

Item = dict[str, Any]


def new_item_id(prefix: str) -> str:
    """An item id in OpenAI's shape (`msg_…`, `fc_…`)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def request_items(body: ResponseInputFields) -> list[Item]:
    """The request's `input` as stored items, each with an id."""
    if isinstance(body.input, str):
        return [message_item("user", body.input, new_item_id("msg"), "input_text")]
    return stored_items(body.input, "input")


def stored_items(input_items: Sequence[InputItem], param_name: str) -> list[Item]:
    """Input items as stored items, each with an id (a 400 names `param_name[i]`)."""
    items: list[Item] = []
    for position, item in enumerate(input_items):
        param = f"{param_name}[{position}]"
        if isinstance(item, ItemReference):
            raise InvalidRequestError(
                "Input items of type `item_reference` are not supported; send the item itself.",
                param=param,
            )
        if isinstance(item, InputMessage):
            part = "output_text" if item.role == "assistant" else "input_text"
            text = item.text(param_name)
            items.append(message_item(item.role, text, item.id or new_item_id("msg"), part))
        elif isinstance(item, CompactionItem):
            items.append(compaction_item(item.encrypted_content, item.id))
        elif isinstance(item, FunctionCallItem):
            items.append(function_call_item(item.call_id, item.name, item.arguments, item.id))
        else:
            items.append(function_call_output_item(item))
    return items


def message_item(role: str, text: str, item_id: str, part_type: str) -> Item:
    """A completed `message` item with one text part."""
    part: Item = {"type": part_type, "text": text}
    if part_type == "output_text":
        part.update(annotations=[], logprobs=[])
    return {
        "type": "message",
        "id": item_id,
        "role": role,
        "status": "completed",
        "content": [part],
    }


def function_call_item(
    call_id: str, name: str, arguments: str, item_id: str | None = None, status: str = "completed"
) -> Item:
    """A `function_call` item."""
    return {
        "type": "function_call",
        "id": item_id or new_item_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def compaction_item(encrypted_content: str, item_id: str | None = None) -> Item:
    """A `compaction` item (its content is opaque to clients)."""
    return {
        "type": "compaction",
        "id": item_id or new_item_id("cmp"),
        "encrypted_content": encrypted_content,
    }


def function_call_output_item(item: FunctionCallOutputItem) -> Item:
    return {
        "type": "function_call_output",
        "id": item.id or new_item_id("fco"),
        "call_id": item.call_id,
        "output": item.text(),
        "status": "completed",
    }


def chat_messages(items: Sequence[Item]) -> list[ChatMessage]:
    """Items as the chat messages a template renders: calls join the assistant turn they follow."""
    messages: list[ChatMessage] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = "system" if item["role"] == "developer" else str(item["role"])
            messages.append(ChatMessage(role, _text(item)))
        elif kind == "function_call":
            call = ToolCall(str(item["call_id"]), str(item["name"]), str(item["arguments"]))
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and not last.tool_call_id:
                messages[-1] = ChatMessage("assistant", last.content, (*last.tool_calls, call))
            else:
                messages.append(ChatMessage("assistant", "", (call,)))
        elif kind == "compaction":
            summary = compaction_summary(str(item["encrypted_content"]))
            messages.append(
                ChatMessage("system", f"Summary of the earlier conversation: {summary}")
            )
        elif kind == "function_call_output":
            messages.append(ChatMessage("tool", str(item["output"]), (), str(item["call_id"])))
    return messages


def joined_turns(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Consecutive plain messages of one role joined into one turn.

    NOTE: the Responses API allows any sequence of items (a conversation's user messages, a
    compaction's summary request after the last user turn); many chat templates (Llama 2's,
    Mistral's) refuse two user turns in a row.
    """
    joined: list[ChatMessage] = []
    for message in messages:
        last = joined[-1] if joined else None
        if (
            last is not None
            and last.role == message.role
            and message.role in ("user", "system")
            and not last.tool_call_id
            and not message.tool_call_id
        ):
            joined[-1] = ChatMessage(message.role, f"{last.content}\n\n{message.content}")
        else:
            joined.append(message)
    return joined


def _text(item: Item) -> str:
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text") or part.get("refusal") or "") for part in content)


def compaction_content(summary: str) -> str:
    """The opaque content of a compaction item: the summary, encoded."""
    return base64.urlsafe_b64encode(json.dumps({"summary": summary}).encode()).decode()


def compaction_summary(content: str) -> str:
    """The summary inside a compaction item's content; a foreign one is a 400."""
    try:
        return str(json.loads(base64.urlsafe_b64decode(content.encode()))["summary"])
    except (ValueError, KeyError, TypeError):
        raise InvalidRequestError(
            "The compaction item's `encrypted_content` was not made by this server.",
            param="input",
        ) from None

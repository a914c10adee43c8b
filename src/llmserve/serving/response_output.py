"""A response's output as it streams: text and tool-call events in, output items and the
Responses API's stream events out (`output_item.added`, `output_text.delta`,
`function_call_arguments.delta`, … `output_item.done`).

The same builder makes a whole answer's items (feed the text, finish, keep the items), so a
streamed response and its stored copy carry the same items with the same ids.
"""

from __future__ import annotations

from llmserve.serving.chat_tools import new_call_id
from llmserve.serving.response_items import Item, function_call_item, new_item_id
from llmserve.serving.response_objects import ResponseEvent, output_message, output_text_part
from llmserve.structured.tool_formats import ToolCallFormat
from llmserve.structured.tool_parser import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    ToolCallParser,
    ToolEvent,
)


class OutputBuilder:
    """One answer's output items, built from its text deltas (read for tool calls or not)."""

    def __init__(self, call_format: ToolCallFormat | None, max_calls: int | None) -> None:
        self.parser = ToolCallParser(call_format) if call_format is not None else None
        self.max_calls = max_calls
        self.items: list[Item] = []
        self.open_item: Item | None = None  # the item deltas go to now
        self.text = ""  # the open message's text
        self.skipped_calls: set[int] = set()

    @property
    def has_calls(self) -> bool:
        return any(item["type"] == "function_call" for item in self.items)

    def feed(self, text: str) -> list[ResponseEvent]:
        """The events of one text delta."""
        if self.parser is None:
            return self._content(text) if text else []
        return self._events(self.parser.feed(text))

    def finish(self) -> list[ResponseEvent]:
        """Close the open item; an answer without items gets an empty message."""
        events = self._events(self.parser.finish()) if self.parser is not None else []
        events += self._close()
        if not self.items:
            events += self._open_message() + self._close()
        return events

    def _events(self, tool_events: list[ToolEvent]) -> list[ResponseEvent]:
        events: list[ResponseEvent] = []
        for event in tool_events:
            if isinstance(event, ContentDelta):
                events += self._content(event.text) if event.text.strip() or self.text else []
            elif isinstance(event, CallStart):
                events += self._start_call(event)
            elif isinstance(event, ArgumentsDelta) and event.index not in self.skipped_calls:
                events += self._arguments(event.text)
        return events

    def _content(self, text: str) -> list[ResponseEvent]:
        events: list[ResponseEvent] = []
        if self.open_item is None or self.open_item["type"] != "message":
            events += self._close() + self._open_message()
        self.text += text
        delta = self._about_text("response.output_text.delta")
        delta["delta"] = text
        delta["logprobs"] = []
        return [*events, delta]

    def _open_message(self) -> list[ResponseEvent]:
        self.open_item = output_message(new_item_id("msg"), "", "in_progress")
        self.text = ""
        part_added = self._about_text("response.content_part.added")
        part_added["part"] = output_text_part("")
        return [self._item_event("response.output_item.added"), part_added]

    def _start_call(self, event: CallStart) -> list[ResponseEvent]:
        num_calls = sum(item["type"] == "function_call" for item in self.items)
        if self.max_calls is not None and num_calls >= self.max_calls:
            self.skipped_calls.add(event.index)
            return []
        events = self._close()
        self.open_item = function_call_item(new_call_id(), event.name, "", status="in_progress")
        return [*events, self._item_event("response.output_item.added")]

    def _arguments(self, text: str) -> list[ResponseEvent]:
        if not text or self.open_item is None or self.open_item["type"] != "function_call":
            return []
        self.open_item["arguments"] += text
        return [
            {
                "type": "response.function_call_arguments.delta",
                "item_id": self.open_item["id"],
                "output_index": len(self.items),
                "delta": text,
            }
        ]

    def _close(self) -> list[ResponseEvent]:
        """The done events of the open item, which joins `items`."""
        item, self.open_item = self.open_item, None
        if item is None:
            return []
        item["status"] = "completed"
        self.open_item = item  # for the events' item_id and output_index
        if item["type"] == "message":
            item["content"] = [output_text_part(self.text)]
            text_done = self._about_text("response.output_text.done")
            text_done["text"] = self.text
            text_done["logprobs"] = []
            part_done = self._about_text("response.content_part.done")
            part_done["part"] = output_text_part(self.text)
            events = [text_done, part_done]
        else:
            events = [
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": len(self.items),
                    "name": item["name"],
                    "arguments": item["arguments"],
                }
            ]
        events.append(self._item_event("response.output_item.done"))
        self.open_item = None
        self.items.append(item)
        return events

    def _item_event(self, event_type: str) -> ResponseEvent:
        assert self.open_item is not None
        return {"type": event_type, "output_index": len(self.items), "item": dict(self.open_item)}

    def _about_text(self, event_type: str) -> ResponseEvent:
        assert self.open_item is not None
        return {
            "type": event_type,
            "item_id": self.open_item["id"],
            "output_index": len(self.items),
            "content_index": 0,
        }

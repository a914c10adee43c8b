"""Turns a model's text, token by token, into content and tool calls, in any tool-call format.

Arguments are streamed as they are written: every `ArgumentsDelta` is an exact slice of the
call's final arguments, so a client that joins them gets what a non-streamed answer holds. Any
split of the text into pieces yields the same content and calls (tests feed every split).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from llmserve.structured.json_scan import JsonScanner
from llmserve.structured.tool_formats import ToolCallFormat


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    name: str


@dataclass(frozen=True)
class ArgumentsDelta:
    index: int
    text: str


ToolEvent = ContentDelta | CallStart | ArgumentsDelta

# The start of a call object written name first: `{"name": "f", "arguments": ` (then the value).
_HEAD = re.compile(
    r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*(?=\S)'
)
# The start of a call written `name[ARGS]` (Mistral tokenizer v11+), maybe with a `[CALL_ID]id`.
_NAME_HEAD = re.compile(r"\s*([^\s\[\]{}]+)\s*(?:\[CALL_ID\]\s*\w*\s*)?\[ARGS\]\s*(?=\S)")


@dataclass
class ParsedCalls:
    """The joined result: content (None when only tools were called) and (name, arguments)."""

    content: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)


class ToolCallParser:
    """Feed text pieces; get events. Call `finish()` once at the end of the text."""

    def __init__(self, call_format: ToolCallFormat) -> None:
        self.format = call_format
        self.buffer = ""
        self.pos = 0
        self.state = "start"
        self.num_calls = 0
        self.pending_space = ""  # trailing whitespace of the content, dropped if a call follows
        self.scanner = JsonScanner()
        self.events: list[ToolEvent] = []

    def feed(self, text: str) -> list[ToolEvent]:
        """Events for the text so far (some text may wait for the next piece to be understood)."""
        self.buffer += text
        while getattr(self, f"_on_{self.state}")(final=False):
            pass
        events, self.events = self.events, []
        return events

    def finish(self) -> list[ToolEvent]:
        """Events for the text still held back."""
        while getattr(self, f"_on_{self.state}")(final=True):
            pass
        if self.state in ("start", "content", "head"):
            self._content(self.buffer[self.pos :])
        if self.pending_space and not self.num_calls:
            self.events.append(ContentDelta(self.pending_space))
        events, self.events = self.events, []
        return events

    # Each state handler consumes what it can; True when it moved on (run again).

    def _on_start(self, final: bool) -> bool:
        """Before any call: the calls start here, or the answer is plain content."""
        rest = self.buffer[self.pos :]
        opener = self.format.start or self.format.call_open
        if opener:
            self.state = "content"
            return True
        stripped = rest.lstrip()
        if not stripped:
            return False
        self.state = "head" if stripped.startswith("{") else "plain"
        return True

    def _on_plain(self, final: bool) -> bool:
        self._content(self.buffer[self.pos :])
        self.pos = len(self.buffer)
        return False

    def _on_content(self, final: bool) -> bool:
        marker = (self.format.start or self.format.call_open).strip()  # whitespace is loose
        if self.format.start and self.num_calls:
            marker = ""  # after a list of calls, the rest is plain content
        found = _find_loose(self.buffer, self.pos, marker) if marker else None
        if found is None:
            keep = 0 if final or not marker else _held_prefix(self.buffer, self.pos, marker)
            self._content(self.buffer[self.pos : len(self.buffer) - keep])
            self.pos = len(self.buffer) - keep
            return False
        self._content(self.buffer[self.pos : found[0]])
        self.pos = found[1]
        self.pending_space = ""
        self.state = "head"
        return True

    def _on_head(self, final: bool) -> bool:
        if self.format.head == "name":
            return self._on_name_head(final)
        match = _HEAD.match(self.buffer, self.pos)
        if match:
            self._start_call(json.loads(f'"{match.group(1)}"'))
            self.pos = match.end()
            self.scanner = JsonScanner()
            self.state = "args"
            return True
        start = self.buffer.find("{", self.pos)
        end = JsonScanner().feed(self.buffer, start) if start >= 0 else None
        if end is None:
            return False
        return self._whole_call(start, end)

    def _on_name_head(self, final: bool) -> bool:
        """`name[ARGS]`: the arguments follow; text that cannot be one is the answer's content."""
        match = _NAME_HEAD.match(self.buffer, self.pos)
        if match:
            self._start_call(match.group(1))
            self.pos = match.end()
            self.scanner = JsonScanner()
            self.state = "args"
            return True
        rest = self.buffer[self.pos :]
        if not final and ("[ARGS]" not in rest or rest.rstrip().endswith("[ARGS]")):
            return False  # the name or the arguments may still be arriving
        self.state = "plain"
        return True

    def _whole_call(self, start: int, end: int) -> bool:
        """A call written in another key order: parsed whole once complete."""
        try:
            call = json.loads(self.buffer[start:end])
            name = call["name"]
            arguments = call.get(self.format.arguments_key, call.get("arguments", {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            self.state = "plain"  # not a call after all: the model's text is its answer
            return True
        self._start_call(str(name))
        self.events.append(ArgumentsDelta(self.num_calls - 1, json.dumps(arguments)))
        self.pos = end
        self.state = "close"
        return True

    def _on_args(self, final: bool) -> bool:
        end = self.scanner.feed(self.buffer, self.pos)
        stop = len(self.buffer) if end is None else end
        if stop > self.pos:
            self.events.append(ArgumentsDelta(self.num_calls - 1, self.buffer[self.pos : stop]))
        self.pos = stop
        if end is None:
            return False
        self.scanner = JsonScanner(in_object=True)
        self.state = "close" if self.format.head == "name" else "tail"
        return True

    def _on_tail(self, final: bool) -> bool:
        """The rest of the call object after its arguments (normally just `}`)."""
        end = self.scanner.feed(self.buffer, self.pos)
        if end is None:
            return False
        self.pos = end
        self.state = "close"
        return True

    def _on_close(self, final: bool) -> bool:
        """After a call object: its closing text, then another call or the end of the calls."""
        fmt = self.format
        for text, state in (
            (fmt.call_close + fmt.separator + fmt.call_open, "head"),
            (fmt.call_close + fmt.end, "content"),
        ):
            if not text:
                continue
            consumed = _match_loose(self.buffer, self.pos, text)
            if consumed is None and not final:
                return False
            if consumed:
                self.pos += consumed
                self.state = state
                return True
        self.state = "content" if fmt.call_open else "plain"
        return True

    def _start_call(self, name: str) -> None:
        self.pending_space = ""
        self.events.append(CallStart(self.num_calls, name))
        self.events.append(ArgumentsDelta(self.num_calls, ""))
        self.num_calls += 1

    def _content(self, text: str) -> None:
        if not text:
            return
        # NOTE: trailing whitespace waits: it is dropped if a call follows, so splits never matter.
        self.pending_space += text
        body = self.pending_space.rstrip()
        if body:
            self.events.append(ContentDelta(body))
            self.pending_space = self.pending_space[len(body) :]


def _find_loose(buffer: str, pos: int, marker: str) -> tuple[int, int] | None:
    """Start and end of `marker` in `buffer[pos:]`, whitespace allowed between its characters
    (a SentencePiece detokenizer writes `[TOOL_CALLS] [` for the tokens `[TOOL_CALLS]`, `▁[`).
    """
    match = re.compile(r"\s*".join(map(re.escape, marker))).search(buffer, pos)
    return None if match is None else (match.start(), match.end())


def _held_prefix(buffer: str, pos: int, marker: str) -> int:
    """How many trailing characters of `buffer[pos:]` could be the start of `marker`."""
    for size in range(len(buffer) - pos, 0, -1):
        suffix = buffer[len(buffer) - size :]
        compact = "".join(suffix.split())
        if not suffix[0].isspace() and len(compact) < len(marker) and marker.startswith(compact):
            return size
    return 0


def _match_loose(buffer: str, pos: int, text: str) -> int | None:
    """Characters `text` takes at `pos`, whitespace ignored; 0: no match; None: not known yet."""
    target = "".join(text.split())
    matched = 0
    for i in range(pos, len(buffer)):
        if buffer[i].isspace():
            continue
        if buffer[i] != target[matched]:
            return 0
        matched += 1
        if matched == len(target):
            return i + 1 - pos
    return None


def parse_tool_calls(call_format: ToolCallFormat, text: str) -> ParsedCalls:
    """The content and calls of a whole answer (the same result as streaming it)."""
    parser = ToolCallParser(call_format)
    return join_events([*parser.feed(text), *parser.finish()])


def join_events(events: list[ToolEvent]) -> ParsedCalls:
    """Joins streamed events into the answer they add up to."""
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    names = [e.name for e in events if isinstance(e, CallStart)]
    arguments = ["" for _ in names]
    for event in events:
        if isinstance(event, ArgumentsDelta):
            arguments[event.index] += event.text
    calls = list(zip(names, arguments, strict=True))
    return ParsedCalls(content if content or not calls else None, calls)

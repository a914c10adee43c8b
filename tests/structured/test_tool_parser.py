"""The tool-call parser, fed token by token and at every split: the same calls as the whole text."""

from __future__ import annotations

import json

import pytest

from llmserve.structured.tool_formats import FORMATS
from llmserve.structured.tool_parser import (
    ArgumentsDelta,
    CallStart,
    ParsedCalls,
    ToolCallParser,
    ToolEvent,
    join_events,
    parse_tool_calls,
)

WEATHER = '{"city": "Pa\\"ris [{", "days": [1, {"x": "}"}]}'
CASES = {
    "hermes": [
        (
            f'<tool_call>\n{{"name": "get_weather", "arguments": {WEATHER}}}\n</tool_call>',
            ParsedCalls(None, [("get_weather", WEATHER)]),
        ),
        (
            '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>\n'
            '<tool_call>\n{"name": "pong", "arguments": {"a": 1}}\n</tool_call>',
            ParsedCalls(None, [("ping", "{}"), ("pong", '{"a": 1}')]),
        ),
        (
            'I will check. <tool_call>{"name": "ping", "arguments": {}}</tool_call>',
            ParsedCalls("I will check.", [("ping", "{}")]),
        ),
        (
            '<tool_call>\n{"arguments": {"a": [1]}, "name": "late_name"}\n</tool_call>',
            ParsedCalls(None, [("late_name", '{"a": [1]}')]),
        ),
        ("a < b and <tool_cal", ParsedCalls("a < b and <tool_cal", [])),
    ],
    "llama3_json": [
        (
            f'{{"name": "get_weather", "parameters": {WEATHER}}}',
            ParsedCalls(None, [("get_weather", WEATHER)]),
        ),
        (
            '{"name": "ping", "parameters": {}}; {"name": "pong", "parameters": {"a": 1}}',
            ParsedCalls(None, [("ping", "{}"), ("pong", '{"a": 1}')]),
        ),
        ("It is sunny {really}.", ParsedCalls("It is sunny {really}.", [])),
    ],
    "mistral": [
        (
            f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {WEATHER}}}]',
            ParsedCalls(None, [("get_weather", WEATHER)]),
        ),
        (
            'Sure.[TOOL_CALLS][{"name": "ping", "arguments": {}}, '
            '{"name": "pong", "arguments": {"a": 1}}]',
            ParsedCalls("Sure.", [("ping", "{}"), ("pong", '{"a": 1}')]),
        ),
        ("No calls [TOOL", ParsedCalls("No calls [TOOL", [])),
        (  # a SentencePiece detokenizer's space between the special token and the list
            '[TOOL_CALLS] [{"name": "ping", "arguments": {}}]',
            ParsedCalls(None, [("ping", "{}")]),
        ),
    ],
    "mistral_args": [
        (
            f"[TOOL_CALLS]get_weather[ARGS]{WEATHER}",
            ParsedCalls(None, [("get_weather", WEATHER)]),
        ),
        (
            'Sure.[TOOL_CALLS]ping[ARGS]{}[TOOL_CALLS]pong[ARGS]{"a": 1}',
            ParsedCalls("Sure.", [("ping", "{}"), ("pong", '{"a": 1}')]),
        ),
        (
            '[TOOL_CALLS]ping[CALL_ID]a1b2c3d4e[ARGS]{"a": 1}',
            ParsedCalls(None, [("ping", '{"a": 1}')]),
        ),
        ("No calls [TOOL", ParsedCalls("No calls [TOOL", [])),
    ],
}
ALL_CASES = [(name, text, want) for name, cases in CASES.items() for text, want in cases]


def streamed(name: str, pieces: list[str]) -> list[ToolEvent]:
    parser = ToolCallParser(FORMATS[name])
    events: list[ToolEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.finish()


@pytest.mark.parametrize(("name", "text", "want"), ALL_CASES)
def test_whole_text_gives_the_calls(name: str, text: str, want: ParsedCalls) -> None:
    assert parse_tool_calls(FORMATS[name], text) == want


@pytest.mark.parametrize(("name", "text", "want"), ALL_CASES)
def test_character_by_character_gives_the_same_calls(
    name: str, text: str, want: ParsedCalls
) -> None:
    assert join_events(streamed(name, list(text))) == want


@pytest.mark.parametrize(("name", "text", "want"), ALL_CASES)
def test_every_two_piece_split_gives_the_same_calls(
    name: str, text: str, want: ParsedCalls
) -> None:
    for cut in range(len(text) + 1):
        assert join_events(streamed(name, [text[:cut], text[cut:]])) == want, cut


@pytest.mark.parametrize("name", sorted(CASES))
def test_worst_splits(name: str) -> None:
    """Splits right inside `{"`, `[{"`, before empty arguments and between two calls."""
    text, want = CASES[name][1]
    cuts = [
        i
        for i in range(1, len(text))
        if text[i - 1 : i + 1] in ('{"', "[{", "{}", "}\n", "},", "};")
    ]
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    assert join_events(streamed(name, pieces)) == want


@pytest.mark.parametrize("name", sorted(CASES))
def test_argument_fragments_are_slices_of_the_final_arguments(name: str) -> None:
    text, want = CASES[name][0]
    events = streamed(name, list(text))
    starts = [e for e in events if isinstance(e, CallStart)]
    fragments = [e.text for e in events if isinstance(e, ArgumentsDelta)]
    assert [s.name for s in starts] == ["get_weather"]
    assert fragments[0] == ""  # the call's first delta carries empty arguments
    assert len(fragments) > 5  # streamed as written, not at the end
    assert "".join(fragments) == want.calls[0][1]
    json.loads("".join(fragments))

"""Tool-call formats: which one a chat template uses, and the grammar that forces calls in it.

- `hermes` (Hermes, Qwen, and llmserve's default for templates without tool support):
  `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block per call.
- `llama3_json` (Llama 3.1+): answers `{"name": ..., "parameters": {...}}`, calls split by `;`.
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolCallFormat:
    """How one family of models writes its calls."""

    name: str
    arguments_key: str  # "arguments", or "parameters" for Llama 3
    start: str  # text before the calls ("" : the answer starts with the first call)
    call_open: str  # text before each call
    call_close: str  # text after each call
    separator: str  # text between two calls (after call_close)
    end: str  # text after the last call


HERMES = ToolCallFormat("hermes", "arguments", "", "<tool_call>\n", "\n</tool_call>", "\n", "")
LLAMA3_JSON = ToolCallFormat("llama3_json", "parameters", "", "", "", "; ", "")
MISTRAL = ToolCallFormat("mistral", "arguments", "[TOOL_CALLS][", "", "", ", ", "]")
FORMATS = {f.name: f for f in (HERMES, LLAMA3_JSON, MISTRAL)}


def detect_tool_call_format(chat_template: str | None) -> str:
    """The format a chat template asks its model to write; Hermes when it says nothing."""
    template = chat_template or ""
    if "[TOOL_CALLS]" in template:
        return MISTRAL.name
    if "<|python_tag|>" in template or "ipython" in template:
        return LLAMA3_JSON.name
    return HERMES.name


def forced_calls_lark(
    call_format: ToolCallFormat, tools: Sequence[Mapping[str, Any]], *, parallel: bool
) -> str:
    """A Lark grammar whose every sentence is one call (or several when `parallel`) of `tools`.

    `tools` are OpenAI function definitions ({name, parameters}); the arguments follow each one's
    JSON schema, so a forced call always parses and validates.
    """
    call = _lark_literal(call_format.call_open) + " call " + _lark_literal(call_format.call_close)
    more = f"({_lark_literal(call_format.separator)} one_call)*" if parallel else ""
    return "\n".join(
        [
            f"start: {_lark_literal(call_format.start)} one_call {more} "
            f"{_lark_literal(call_format.end)}",
            f"one_call: {call}",
            f"call: %json {json.dumps(compact(call_schema(call_format, tools)))}",
        ]
    )


def call_schema(call_format: ToolCallFormat, tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one call object: the name first, then arguments that fit that tool."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool["name"]},
                call_format.arguments_key: tool.get("parameters") or EMPTY_PARAMETERS,
            },
            "required": ["name", call_format.arguments_key],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


EMPTY_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}


def _lark_literal(text: str) -> str:
    """`text` as a Lark string literal ("" when empty: Lark has no empty literal)."""
    return json.dumps(text) if text else ""


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with llguidance told to write its JSON without whitespace between tokens.

    NOTE: as OpenAI writes arguments; flexible whitespace lets a weak model pad a call forever.
    """
    return {"x-guidance": {"whitespace_flexible": False}, **schema}

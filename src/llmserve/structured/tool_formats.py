"""Tool-call formats: which one a chat template uses, and the grammar that forces calls in it.

- `hermes` (Hermes, Qwen, and llmserve's default for templates without tool support):
  `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block per call.
- `llama3_json` (Llama 3.1+): answers `{"name": ..., "parameters": {...}}`, calls split by `;`.
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (Mistral 7B v0.3, Nemo).
- `mistral_args`: `[TOOL_CALLS]name[ARGS]{...}`, repeated per call (the tokenizer v11+ form:
  Mistral Small 3.2, Magistral, Devstral).

`[TOOL_CALLS]` and `[ARGS]` are special tokens: `tokens` names them so the detokenizer shows them
to the parser (other special tokens stay hidden from the content).
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
    head: str = "json"  # "json": a {"name", arguments} object; "name": `name[ARGS]` then the JSON
    tokens: tuple[str, ...] = ()  # special tokens of the format: decoded, not skipped


HERMES = ToolCallFormat(
    "hermes", "arguments", "", "<tool_call>\n", "\n</tool_call>", "\n", "",
    tokens=("<tool_call>", "</tool_call>"),
)  # fmt: skip
LLAMA3_JSON = ToolCallFormat("llama3_json", "parameters", "", "", "", "; ", "")
MISTRAL = ToolCallFormat(
    "mistral", "arguments", "[TOOL_CALLS][", "", "", ", ", "]", tokens=("[TOOL_CALLS]",)
)
MISTRAL_ARGS = ToolCallFormat(
    "mistral_args", "arguments", "", "[TOOL_CALLS]", "", "", "",
    head="name", tokens=("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"),
)  # fmt: skip
FORMATS = {f.name: f for f in (HERMES, LLAMA3_JSON, MISTRAL, MISTRAL_ARGS)}


def detect_tool_call_format(
    chat_template: str | None, special_tokens: frozenset[str] = frozenset()
) -> str:
    """The format a chat template (or the tokenizer's special tokens) asks the model to write;
    Hermes when they say nothing. Like vLLM's `--tool-call-parser` choice for each family.
    """
    template = chat_template or ""
    if "[TOOL_CALLS]" in template or "[TOOL_CALLS]" in special_tokens:
        return (
            MISTRAL_ARGS.name if "[ARGS]" in template or "[ARGS]" in special_tokens else "mistral"
        )
    if "<|python_tag|>" in template or "ipython" in template:
        return LLAMA3_JSON.name
    return HERMES.name


def forced_calls_lark(
    call_format: ToolCallFormat, tools: Sequence[Mapping[str, Any]], *, parallel: bool
) -> str:
    """A Lark grammar whose every sentence is one call (or several when `parallel`) of `tools`.

    `tools` are OpenAI function definitions ({name, parameters}); the arguments follow each one's
    JSON schema, so a forced call always parses and validates. Whitespace inside the JSON is the
    compiler's choice (`json_whitespace.py`: compact unless configured flexible).
    """
    if call_format.head == "name":
        return _named_calls_lark(call_format, tools, parallel=parallel)
    call = _lark_literal(call_format.call_open) + " call " + _lark_literal(call_format.call_close)
    more = f"({_lark_literal(call_format.separator)} one_call)*" if parallel else ""
    return "\n".join(
        [
            f"start: {_lark_literal(call_format.start)} one_call {more} "
            f"{_lark_literal(call_format.end)}",
            f"one_call: {call}",
            f"call: %json {json.dumps(call_schema(call_format, tools))}",
        ]
    )


def _named_calls_lark(
    call_format: ToolCallFormat, tools: Sequence[Mapping[str, Any]], *, parallel: bool
) -> str:
    """`[TOOL_CALLS]name[ARGS]{...}` calls: the name picks the arguments' schema."""
    rules = [f"start: one_call{'+' if parallel else ''}"]
    rules.append(
        f"one_call: {_lark_literal(call_format.call_open)} ("
        + " | ".join(f"call_{i}" for i in range(len(tools)))
        + ")"
    )
    for i, tool in enumerate(tools):
        rules.append(f"call_{i}: {_lark_literal(tool['name'] + '[ARGS]')} args_{i}")
        rules.append(f"args_{i}: %json {json.dumps(tool.get('parameters') or EMPTY_PARAMETERS)}")
    return "\n".join(rules)


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

"""Whitespace in generated JSON: compact as OpenAI writes it, or flexible (`structured.whitespace`).

One choice per compiler: it applies to `json_schema` and `json_object` answers and to every
`%json` inside a Lark grammar (tool-call arguments, `structured_outputs.grammar`).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from llmserve.config import JsonWhitespace

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# NOTE: compact is `{"a":1,"b":[1,2]}`; flexible whitespace lets a weak model pad its JSON until
# `max_tokens` runs out (random weights write `{\r"city"  \r  :\t\n ...`).
_OPTIONS: dict[str, JsonCompileOptions] = {
    "compact": {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"},
    "flexible": {"whitespace_flexible": True},
}
_JSON_DIRECTIVE = re.compile(r"%json\s*")


def json_options(whitespace: JsonWhitespace) -> JsonCompileOptions:
    """llguidance's JSON compile options for `whitespace` (a schema's own `x-guidance` wins)."""
    return _OPTIONS[whitespace]


def lark_json_options(lark: str, whitespace: JsonWhitespace) -> str:
    """`lark` with each `%json {schema}` given the options of `whitespace` as its defaults.

    A schema that does not parse as JSON is left as written: llguidance reports it.
    """
    decoder = json.JSONDecoder()
    parts, pos = [], 0
    for found in _JSON_DIRECTIVE.finditer(lark):
        if found.start() < pos:
            continue  # inside a schema already rewritten
        try:
            schema, end = decoder.raw_decode(lark, found.end())
        except ValueError:
            continue
        if not isinstance(schema, dict):
            continue
        own = schema.get("x-guidance")
        guidance = {**json_options(whitespace), **(own if isinstance(own, dict) else {})}
        parts += [lark[pos : found.end()], json.dumps({**schema, "x-guidance": guidance})]
        pos = end
    parts.append(lark[pos:])
    return "".join(parts)

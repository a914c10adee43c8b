"""How deep a grammar nests, measured before compiling: llguidance's compile recurses natively.

llguidance follows a JSON schema's `$ref` chain and a Lark grammar's rule chain recursively; on
an 8 MB thread stack a 1,000-deep `$ref` chain (or a 3,000-deep rule chain) overflows it and the
process dies with SIGSEGV. Compiles therefore run on big-stack threads (`compile_worker.py`),
and a grammar deeper than `MAX_GRAMMAR_DEPTH` is refused here, before anything native runs.

The depth is that of a depth-first walk from the root that expands each `$ref` target or rule
once (as llguidance does): every JSON object or list, every `$ref` jump and every rule reference
adds one level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from llmserve.structured.grammar import InvalidGrammarError
from llmserve.types import GrammarSpec

# NOTE: measured (llguidance 1.9.1): at most ~3 KB of native stack per level counted here, so
# this limit needs ~12 MB; compile threads have 256 MB (compile_worker.STACK_BYTES).
MAX_GRAMMAR_DEPTH = 2048
_DEFINITION_KEYS = frozenset({"$defs", "definitions"})  # reached only through a `$ref`
_RULE_START = re.compile(r"^\s*[?!]?([A-Za-z_][A-Za-z0-9_]*)(?:\.-?\d+)?\s*:", re.MULTILINE)
_LITERALS = re.compile(r'"(?:\\.|[^"\\\n])*"i?|/(?:\\.|[^/\\\n])+/[imslux]*|//[^\n]*')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_depth(spec: GrammarSpec) -> None:
    """InvalidGrammarError when `spec` nests deeper than `MAX_GRAMMAR_DEPTH`."""
    depth = grammar_depth(spec)
    if depth > MAX_GRAMMAR_DEPTH:
        what = "its `$ref` chains and nesting" if spec.kind == "json_schema" else "its rules"
        raise InvalidGrammarError(
            f"the grammar is too deeply nested: {what} go {depth} levels deep; "
            f"at most {MAX_GRAMMAR_DEPTH} are allowed"
        )


def grammar_depth(spec: GrammarSpec) -> int:
    """The nesting depth of `spec` (0 for kinds that cannot nest: choice, json_object)."""
    if spec.kind == "json_schema":
        return schema_depth(_loads(spec.source))
    if spec.kind == "lark":
        return lark_depth(spec.source)
    return 0


def schema_depth(schema: Any) -> int:
    """The depth of a JSON schema's depth-first walk, following local `$ref`s once each."""
    expanded: set[int] = set()
    stack: list[tuple[Any, int]] = [(schema, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in _schema_children(schema, node, expanded):
            stack.append((child, depth + 1))
    return deepest


def _schema_children(root: Any, node: Any, expanded: set[int]) -> Iterator[Any]:
    """The containers under `node`, and the target of its `$ref` when not expanded before."""
    if isinstance(node, list):
        yield from (item for item in node if isinstance(item, dict | list))
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key not in _DEFINITION_KEYS and isinstance(value, dict | list):
            yield value
    target = _resolve(root, node.get("$ref"))
    if target is not None and id(target) not in expanded:
        expanded.add(id(target))
        yield target


def _resolve(root: Any, ref: object) -> Any:
    """The schema a local `$ref` ("#/$defs/x") points to; None for others and for dead ends."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdecimal() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node if isinstance(node, dict | list) else None


def lark_depth(text: str) -> int:
    """The depth of a Lark grammar: its rule chain from `start`, or an embedded `%json` schema."""
    text, schemas = _without_json_blocks(text)
    rules = _rules(text)
    deepest = max((schema_depth(s) for s in schemas), default=0)
    return max(deepest, _rule_chain_depth(rules, "start" if "start" in rules else None))


def _without_json_blocks(text: str) -> tuple[str, list[Any]]:
    """`text` with each `%json {...}` block removed, and the schemas of those blocks."""
    decoder = json.JSONDecoder()
    schemas: list[Any] = []
    kept: list[str] = []
    position = 0
    while (found := text.find("%json", position)) >= 0:
        kept.append(text[position:found])
        start = found + len("%json")
        while start < len(text) and text[start].isspace():
            start += 1
        try:
            schema, position = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            position = start  # llguidance will report it
            continue
        schemas.append(schema)
    kept.append(text[position:])
    return "".join(kept), schemas


def _rules(text: str) -> dict[str, set[str]]:
    """Each rule's (or terminal's) name and the names its expansions refer to."""
    text = _LITERALS.sub(" ", text)
    starts = list(_RULE_START.finditer(text))
    rules: dict[str, set[str]] = {}
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[match.end() : end]
        rules.setdefault(match.group(1), set()).update(_NAME.findall(body))
    return rules


def _rule_chain_depth(rules: dict[str, set[str]], start: str | None) -> int:
    """The deepest stack of a depth-first walk of the rules, each rule expanded once."""
    if start is None:
        return 0
    expanded = {start}
    stack: list[tuple[str, int]] = [(start, 1)]
    deepest = 0
    while stack:
        name, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in rules.get(name, ()):
            if child in rules and child not in expanded:
                expanded.add(child)
                stack.append((child, depth + 1))
    return deepest


def _loads(source: str) -> Any:
    try:
        return json.loads(source)
    except (ValueError, RecursionError):
        return None  # not JSON (or absurdly nested): llguidance's parser refuses it

"""The attacker's grammars of issue 18: a 1,000-deep `$ref` chain, a 3,000-deep Lark rule chain.

Both overflowed llguidance's native stack on an 8 MB thread and killed the server (SIGSEGV).
"""

from __future__ import annotations

import json
from typing import Any


def ref_chain_schema(depth: int) -> dict[str, Any]:
    """An object whose `next` field is an object ... `depth` `$ref`s deep (flat `$defs`)."""
    defs: dict[str, Any] = {
        f"d{i}": {
            "type": "object",
            "properties": {"next": {"$ref": f"#/$defs/d{i + 1}"}},
            "required": ["next"],
            "additionalProperties": False,
        }
        for i in range(depth)
    }
    defs[f"d{depth}"] = {"type": "string", "maxLength": 4}
    return {"$ref": "#/$defs/d0", "$defs": defs}


def rule_chain_lark(depth: int) -> str:
    """A Lark grammar whose rules chain `depth` deep: start -> r0 -> r1 -> ... -> "x"."""
    rules = [f"r{i}: r{i + 1}" for i in range(depth)]
    return "\n".join(["start: r0", *rules, f'r{depth}: "x"'])


def schema_bytes(depth: int) -> int:
    return len(json.dumps(ref_chain_schema(depth)))

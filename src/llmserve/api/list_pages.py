"""One page of a list of items, as OpenAI pages them: `limit`, `order` and `after` (an item id)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request

from llmserve.errors import InvalidRequestError

MAX_LIMIT = 100


def list_page(items: Sequence[dict[str, Any]], request: Request) -> dict[str, Any]:
    """`{"object": "list", "data", "first_id", "last_id", "has_more"}` of `items` (oldest first)."""
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be `asc` or `desc`.", param="order")
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdecimal() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidRequestError(
            f"`limit` must be an integer from 1 to {MAX_LIMIT}.", param="limit"
        )
    ordered = list(items) if order == "asc" else list(reversed(items))
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    page = ordered[: int(raw_limit)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > len(page),
    }

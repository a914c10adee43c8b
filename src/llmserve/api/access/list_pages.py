"""One page of a list of items held in memory, as OpenAI pages them: `limit`, `order` and
`after` (an item id), framed like the store's pages (`jobs_access.list_body`)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from llmserve.api.access.jobs_access import ListObject, list_body, page_limit
from llmserve.errors import InvalidRequestError
from llmserve.jobs.store import Page
from llmserve.serving.response_items import Item


def list_page(items: Sequence[Item], request: Request) -> ListObject[Item]:
    """`{"object": "list", "data", "first_id", "last_id", "has_more"}` of `items` (oldest first)."""
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("`order` must be `asc` or `desc`.", param="order")
    limit = page_limit(request)
    ordered = list(items) if order == "asc" else list(reversed(items))
    after = request.query_params.get("after")
    if after is not None:
        ids = [item["id"] for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    return list_body(Page(ordered[:limit], has_more=len(ordered) > limit), _same)


def _same(item: Item) -> Item:
    return item

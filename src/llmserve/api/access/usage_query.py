"""The query of `GET /admin/usage?key=…&since=…&bucket=hour|day`: parsed and checked here.

`since` is unix seconds (`1733300000`), an ISO 8601 date or time (`2026-12-01`,
`2026-12-01T08:00:00Z`; UTC unless it names a zone), or a duration back from now (`24h`, `7d`).
Without `since`: the last 48 hours for hour buckets, the last 30 days for day buckets.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal, TypedDict, cast

from llmserve.auth.keys import parse_duration
from llmserve.auth.usage_buckets import Bucket, UsageBucketObject
from llmserve.errors import InvalidRequestError

DEFAULT_SPAN_S: dict[str, int] = {"hour": 48 * 3600, "day": 30 * 86400}


class UsageBucketList(TypedDict):
    object: Literal["list"]
    bucket: Bucket
    since: int
    data: list[UsageBucketObject]


def parse_bucket(text: str) -> Bucket:
    """`hour` or `day`; 400 naming `bucket` otherwise."""
    if text not in DEFAULT_SPAN_S:
        raise InvalidRequestError(
            f"`bucket` must be `hour` or `day`; got {text!r}.", param="bucket"
        )
    return cast(Bucket, text)


def parse_since(text: str | None, bucket: Bucket, now: float | None = None) -> int:
    """Unix seconds from which buckets are returned; 400 naming `since` when unreadable."""
    now = time.time() if now is None else now
    if text is None:
        return int(now) - DEFAULT_SPAN_S[bucket]
    text = text.strip()
    if text.isdecimal():
        return int(text)
    try:
        return int(now - parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"`since` must be unix seconds, an ISO 8601 date or time, or a duration such as "
            f"24h or 7d; got {text!r}.",
            param="since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())

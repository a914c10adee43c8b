"""Usage per key, model and hour, beside the totals in the key store (same SQLite file).

Every usage delta the store adds to its totals is added, in the same transaction, to the hour it
was written in; day buckets are sums of hours (UTC). So the totals equal the sums of the buckets
for everything recorded since this table exists.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Literal, TypedDict

Bucket = Literal["hour", "day"]
BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_buckets (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    rejections INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model, hour_start)
)
"""
BACKFILL = (
    "INSERT INTO usage_buckets SELECT u.key_id, u.model,"
    " CAST(COALESCE(k.created_at, 0) AS INTEGER) / 3600 * 3600, u.requests, u.prompt_tokens,"
    " u.completion_tokens, u.errors, u.rejections"
    " FROM usage u LEFT JOIN api_keys k ON k.key_id = u.key_id"
)
ADD = (
    "INSERT INTO usage_buckets VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(key_id, model, hour_start) DO UPDATE SET"
    " requests = requests + excluded.requests,"
    " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = completion_tokens + excluded.completion_tokens,"
    " errors = errors + excluded.errors, rejections = rejections + excluded.rejections"
)


def hour_start(now: float | None = None) -> int:
    """The start (unix seconds, UTC) of the hour `now` falls in."""
    seconds = int(time.time() if now is None else now)
    return seconds - seconds % 3600


def bucket_rows(
    rows: list[tuple[object, ...]], now: float | None = None
) -> list[tuple[object, ...]]:
    """Rows of the totals table's shape (key_id, model, counts...) as rows of this table."""
    start = hour_start(now)
    return [(key_id, model, start, *counts) for key_id, model, *counts in rows]


@dataclass(frozen=True)
class UsageBucketRow:
    """Usage of one key on one model in one hour or day."""

    key_id: str
    key_name: str
    model: str
    start: int  # unix seconds, UTC
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    rejections: int


def read_buckets(
    db: sqlite3.Connection, bucket: Bucket, since: int, name: str | None
) -> list[UsageBucketRow]:
    """Buckets that start at or after `since` (rounded down to a bucket), oldest first."""
    width = BUCKET_SECONDS[bucket]
    query = (
        "SELECT b.key_id, COALESCE(k.name, b.key_id), b.model, b.hour_start - b.hour_start % ?,"
        " SUM(b.requests), SUM(b.prompt_tokens), SUM(b.completion_tokens), SUM(b.errors),"
        " SUM(b.rejections) FROM usage_buckets b LEFT JOIN api_keys k ON k.key_id = b.key_id"
        " WHERE b.hour_start >= ?"
    )
    params: tuple[object, ...] = (width, since - since % width)
    if name is not None:
        query += " AND k.name = ?"
        params += (name,)
    query += " GROUP BY 1, 3, 4 ORDER BY 4, 2, 3"
    return [UsageBucketRow(*row) for row in db.execute(query, params).fetchall()]


class UsageBucketObject(TypedDict):
    """One bucket as `GET /admin/usage?bucket=…` shows it."""

    key_id: str
    key_name: str
    model: str
    start: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int
    rejections: int


def describe_bucket(row: UsageBucketRow) -> UsageBucketObject:
    return {
        "key_id": row.key_id,
        "key_name": row.key_name,
        "model": row.model,
        "start": row.start,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.prompt_tokens + row.completion_tokens,
        "errors": row.errors,
        "rejections": row.rejections,
    }

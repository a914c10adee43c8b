"""`PostgresKeyStore`: API keys (hashed) and usage in PostgreSQL, shared by every process.

The same methods as `SqliteKeyStore`, on a connection pool. Every server process reads a key
from the database on each request (no cache), so a key made, revoked or re-limited through one
process holds on every other at its next request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import astuple
from typing import Any

import psycopg

from llmserve.auth import usage_buckets
from llmserve.auth.base import UsageRecord
from llmserve.auth.keys import ApiKey, KeySpec, generate_secret, hash_secret, hint_for, new_key_id
from llmserve.auth.store import (
    _KEY_COLUMNS,
    DuplicateKeyNameError,
    UnknownKeyError,
    UsageDelta,
    UsageDeltas,
    UsageRow,
    _row_to_key,
)
from llmserve.database.migrations import open_migrated
from llmserve.database.postgres import Connection

_ADD_USAGE = (
    "INSERT INTO usage AS u VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (key_id, model) DO UPDATE SET requests = u.requests + excluded.requests,"
    " prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = u.completion_tokens + excluded.completion_tokens,"
    " errors = u.errors + excluded.errors, rejections = u.rejections + excluded.rejections"
)
_ADD_BUCKET = (
    _ADD_USAGE.replace("usage AS u", "usage_buckets AS u")
    .replace("%s, %s)", "%s, %s, %s)")
    .replace("(key_id, model)", "(key_id, model, hour_start)")
)
_BY_ID = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = %s"


class PostgresKeyStore:
    """API keys and usage in the PostgreSQL database at `url` (schema migrated on open)."""

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        self.database = open_migrated(url, max_size=max_connections)

    def close(self) -> None:
        self.database.close()

    def create_key(self, spec: KeySpec) -> tuple[ApiKey, str]:
        """Store a new key; returns it and its secret, which is shown once and never stored."""
        secret, now = generate_secret(), time.time()
        key = ApiKey(
            key_id=new_key_id(), name=spec.name, key_hash=hash_secret(secret),
            hint=hint_for(secret), created_at=now,
            expires_at=None if spec.expires_in_s is None else now + spec.expires_in_s,
            allowed_models=spec.allowed_models, max_concurrency=spec.max_concurrency,
            rpm=spec.rpm, tpm=spec.tpm, cache_group=spec.cache_group,
            max_storage_mb=spec.max_storage_mb,
        )  # fmt: skip
        try:
            with self.database.transaction() as connection:
                insert_key(connection, key)
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateKeyNameError(f"a key named {spec.name!r} already exists") from exc
        return key, secret

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose secret hashes to `key_hash` (revoked and expired ones included)."""
        return self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s", (key_hash,))

    def find_active(self, name: str) -> ApiKey | None:
        """The non-revoked key called `name`."""
        query = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = %s AND NOT disabled"
        return self._one(query, (name,))

    def list_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        query = f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at"
        return [_row_to_key(row) for row in self._rows(query, ())]

    def has_keys(self) -> bool:
        """True once any key was ever made: from then on every /v1 call needs a key."""
        return bool(self._rows("SELECT 1 FROM api_keys LIMIT 1", ()))

    def revoke(self, name: str) -> ApiKey:
        """Disable the active key called `name`; raises UnknownKeyError."""
        with self.database.transaction() as connection:
            row = connection.execute(
                f"UPDATE api_keys SET disabled = TRUE WHERE name = %s AND NOT disabled "
                f"RETURNING {_KEY_COLUMNS}",
                (name,),
            ).fetchone()
        if row is None:
            raise UnknownKeyError(f"no active key named {name!r}")
        return _row_to_key(row)

    def update_limits(self, name: str, limits: Mapping[str, int | None]) -> ApiKey:
        """Set max_concurrency / rpm / tpm of the active key `name`; raises UnknownKeyError."""
        fields = [f for f in ("max_concurrency", "rpm", "tpm") if f in limits]
        assignments = ", ".join(f"{f} = %s" for f in fields) or "name = name"
        with self.database.transaction() as connection:
            row = connection.execute(
                f"UPDATE api_keys SET {assignments} WHERE name = %s AND NOT disabled "
                f"RETURNING {_KEY_COLUMNS}",
                (*[limits[f] for f in fields], name),
            ).fetchone()
        if row is None:
            raise UnknownKeyError(f"no active key named {name!r}")
        return _row_to_key(row)

    def record_usage(self, key_id: str, usage: UsageRecord) -> None:
        """Add one finished request to the key's totals for its model."""
        delta = UsageDelta(1, usage.prompt_tokens, usage.completion_tokens, int(usage.is_error))
        self.add_usage({(key_id, usage.model): delta})

    def record_rejection(self, key_id: str, model: str) -> None:
        """Count one request refused by a limit (429)."""
        self.add_usage({(key_id, model): UsageDelta(rejections=1)})

    def add_usage(self, deltas: UsageDeltas) -> None:
        """Add each delta to its key's totals for its model, all in one transaction."""
        # NOTE: sorted, so two processes adding the same keys lock their rows in one order
        rows = sorted((key_id, model, *astuple(d)) for (key_id, model), d in deltas.items())
        with self.database.transaction() as connection, connection.cursor() as cursor:
            cursor.executemany(_ADD_USAGE, rows)
            cursor.executemany(_ADD_BUCKET, usage_buckets.bucket_rows(list(rows)))

    def usage(self, name: str | None = None) -> list[UsageRow]:
        """Usage totals per key and model, optionally for the keys called `name`."""
        query = (
            "SELECT u.key_id, COALESCE(k.name, u.key_id), u.model, u.requests, u.prompt_tokens,"
            " u.completion_tokens, u.errors, u.rejections"
            " FROM usage u LEFT JOIN api_keys k ON k.key_id = u.key_id"
        )
        params: tuple[str, ...] = ()
        if name is not None:
            query, params = query + " WHERE k.name = %s", (name,)
        rows = self._rows(query + " ORDER BY 2, u.model", params)
        return [UsageRow(str(r[0]), str(r[1]), str(r[2]), *(int(v) for v in r[3:])) for r in rows]

    def bucketed_usage(
        self, bucket: usage_buckets.Bucket, since: int, name: str | None = None
    ) -> list[usage_buckets.UsageBucketRow]:
        """Usage per key, model and hour or day from `since` (unix seconds) on."""
        width = usage_buckets.BUCKET_SECONDS[bucket]
        query = (
            "SELECT b.key_id, COALESCE(k.name, b.key_id), b.model,"
            " b.hour_start - b.hour_start %% %s,"
            " SUM(b.requests), SUM(b.prompt_tokens), SUM(b.completion_tokens), SUM(b.errors),"
            " SUM(b.rejections) FROM usage_buckets b LEFT JOIN api_keys k ON k.key_id = b.key_id"
            " WHERE b.hour_start >= %s"
        )
        params: tuple[object, ...] = (width, since - since % width)
        if name is not None:
            query, params = query + " AND k.name = %s", (*params, name)
        rows = self._rows(query + " GROUP BY 1, 2, 3, 4 ORDER BY 4, 2, 3", params)
        return [
            usage_buckets.UsageBucketRow(str(r[0]), str(r[1]), str(r[2]), *(int(v) for v in r[3:]))
            for r in rows
        ]

    def _one(self, query: str, params: tuple[object, ...]) -> ApiKey | None:
        rows = self._rows(query, params)
        return _row_to_key(rows[0]) if rows else None

    def _rows(self, query: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self.database.connection() as connection:
            return connection.execute(query, params).fetchall()


def insert_key(connection: Connection, key: ApiKey) -> None:
    """Insert `key` as it is (its id, hash and status kept): new keys and `db copy` alike."""
    models = None if key.allowed_models is None else json.dumps(sorted(key.allowed_models))
    values = (
        key.key_id, key.name, key.key_hash, key.hint, key.created_at, key.expires_at,
        key.disabled, models, key.max_concurrency, key.rpm, key.tpm, key.cache_group,
        key.max_storage_mb,
    )  # fmt: skip
    placeholders = ", ".join(["%s"] * len(values))
    connection.execute(f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({placeholders})", values)

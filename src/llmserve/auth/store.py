"""The key store: API keys (hashed) and usage totals per key and model, in one SQLite file.

Several server processes on one machine (or one shared volume) share the file; SQLite's WAL mode
and a busy timeout make their writes safe. Live limits (slots, RPM/TPM windows) are elsewhere
(`limits.py`): this file holds only what must survive a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TypedDict

from llmserve.auth import usage_buckets
from llmserve.auth.base import UsageRecord
from llmserve.auth.keys import (
    ApiKey,
    KeySpec,
    generate_secret,
    hash_secret,
    hint_for,
    new_key_id,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    disabled INTEGER NOT NULL DEFAULT 0,
    allowed_models TEXT,
    max_concurrency INTEGER NOT NULL,
    rpm INTEGER,
    tpm INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name) WHERE disabled = 0;
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    rejections INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model)
);
"""
_KEY_COLUMNS = (
    "key_id, name, key_hash, hint, created_at, expires_at, disabled, allowed_models, "
    "max_concurrency, rpm, tpm"
)
# The key's prefix-cache group (additive column, added to older files on open).
_KEY_COLUMNS += ", cache_group"
# The key's storage quota in MB (additive column; NULL: jobs.max_storage_mb_per_key).
_KEY_COLUMNS += ", max_storage_mb"


_ADD_USAGE = (
    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(key_id, model) DO UPDATE SET requests = requests + excluded.requests,"
    " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = completion_tokens + excluded.completion_tokens,"
    " errors = errors + excluded.errors, rejections = rejections + excluded.rejections"
)


class DuplicateKeyNameError(ValueError):
    """An active key already has this name."""


class UnknownKeyError(LookupError):
    """No active key has this name."""


@dataclass(frozen=True)
class UsageDelta:
    """What to add to one key's usage totals on one model."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    rejections: int = 0

    def __add__(self, other: UsageDelta) -> UsageDelta:
        return UsageDelta(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


UsageDeltas = Mapping[tuple[str, str], UsageDelta]  # (key_id, model) -> what to add


@dataclass(frozen=True)
class UsageRow:
    """Usage totals of one key on one model."""

    key_id: str
    key_name: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    rejections: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _row_to_key(row: tuple[object, ...]) -> ApiKey:
    (key_id, name, key_hash, hint, created, expires, disabled, models, conc, rpm, tpm) = row[:11]
    cache_group = row[11]  # issue 19
    max_storage_mb = row[12]  # issue 18b
    return ApiKey(
        key_id=str(key_id),
        name=str(name),
        key_hash=str(key_hash),
        hint=str(hint),
        created_at=float(created),  # type: ignore[arg-type]
        expires_at=None if expires is None else float(expires),  # type: ignore[arg-type]
        disabled=bool(disabled),
        allowed_models=None if models is None else frozenset(json.loads(str(models))),
        max_concurrency=int(conc),  # type: ignore[call-overload]
        rpm=None if rpm is None else int(rpm),  # type: ignore[call-overload]
        tpm=None if tpm is None else int(tpm),  # type: ignore[call-overload]
        cache_group=None if cache_group is None else str(cache_group),
        max_storage_mb=None if max_storage_mb is None else int(max_storage_mb),  # type: ignore[call-overload]
    )


class SqliteKeyStore:
    """API keys and usage in `path` (a SQLite file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # one connection, used from the loop and from threads
        self._db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _add_column(self._db, "api_keys", "cache_group", "TEXT")  # issue 19
        _add_column(self._db, "api_keys", "max_storage_mb", "INTEGER")  # issue 18b
        self._db.commit()
        self._add_usage_buckets()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create_key(self, spec: KeySpec) -> tuple[ApiKey, str]:
        """Store a new key; returns it and its secret, which is shown once and never stored."""
        secret = generate_secret()
        key = ApiKey(
            key_id=new_key_id(),
            name=spec.name,
            key_hash=hash_secret(secret),
            hint=hint_for(secret),
            created_at=time.time(),
            expires_at=None if spec.expires_in_s is None else time.time() + spec.expires_in_s,
            allowed_models=spec.allowed_models,
            max_concurrency=spec.max_concurrency,
            rpm=spec.rpm,
            tpm=spec.tpm,
            cache_group=spec.cache_group,
            max_storage_mb=spec.max_storage_mb,
        )
        models = None if key.allowed_models is None else json.dumps(sorted(key.allowed_models))
        values: tuple[object, ...] = (key.key_id, key.name, key.key_hash, key.hint)
        values += (key.created_at, key.expires_at, 0, models, key.max_concurrency, key.rpm, key.tpm)
        values += (key.cache_group,)  # issue 19
        values += (key.max_storage_mb,)  # issue 18b
        try:
            with self._lock, self._db:
                self._db.execute(
                    f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({'?,' * (len(values) - 1)}?)",
                    values,
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyNameError(f"a key named {spec.name!r} already exists") from exc
        return key, secret

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose secret hashes to `key_hash` (revoked and expired ones included)."""
        return self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,))

    def find_active(self, name: str) -> ApiKey | None:
        """The non-revoked key called `name`."""
        query = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = ? AND disabled = 0"
        return self._one(query, (name,))

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [_row_to_key(row) for row in rows]

    def has_keys(self) -> bool:
        """True once any key was ever made: from then on every /v1 call needs a key."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def revoke(self, name: str) -> ApiKey:
        """Disable the active key called `name`; raises UnknownKeyError."""
        key = self.find_active(name)
        if key is None:
            raise UnknownKeyError(f"no active key named {name!r}")
        with self._lock, self._db:
            self._db.execute("UPDATE api_keys SET disabled = 1 WHERE key_id = ?", (key.key_id,))
        return (
            self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key.key_id,)) or key
        )

    def record_usage(self, key_id: str, usage: UsageRecord) -> None:
        """Add one finished request to the key's totals for its model."""
        delta = UsageDelta(1, usage.prompt_tokens, usage.completion_tokens, int(usage.is_error))
        self.add_usage({(key_id, usage.model): delta})

    def record_rejection(self, key_id: str, model: str) -> None:
        """Count one request refused by a limit (429)."""
        self.add_usage({(key_id, model): UsageDelta(rejections=1)})

    def add_usage(self, deltas: UsageDeltas) -> None:
        """Add each delta to its key's totals for its model, all in one transaction."""
        rows = [(key_id, model, *astuple(d)) for (key_id, model), d in deltas.items()]
        with self._lock, self._db:
            self._db.executemany(_ADD_USAGE, rows)
            self._db.executemany(usage_buckets.ADD, usage_buckets.bucket_rows(rows))

    def usage(self, name: str | None = None) -> list[UsageRow]:
        """Usage totals per key and model, optionally for the keys called `name`."""
        query = (
            "SELECT u.key_id, COALESCE(k.name, u.key_id), u.model, u.requests, u.prompt_tokens,"
            " u.completion_tokens, u.errors, u.rejections"
            " FROM usage u LEFT JOIN api_keys k ON k.key_id = u.key_id"
        )
        params: tuple[str, ...] = ()
        if name is not None:
            query += " WHERE k.name = ?"
            params = (name,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY 2, u.model", params).fetchall()
        return [UsageRow(*row) for row in rows]

    # --- usage per hour (usage_buckets.py) and limit edits: a self-contained block ---

    def _add_usage_buckets(self) -> None:
        """Create the bucket table; usage from before it goes to its key's creation hour."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # NOTE: one process creates and fills it
            try:
                exists = self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'usage_buckets'"
                ).fetchone()
                self._db.execute(usage_buckets.SCHEMA)
                if not exists:  # NOTE: keeps totals == sums of buckets for older stores
                    self._db.execute(usage_buckets.BACKFILL)
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def bucketed_usage(
        self, bucket: usage_buckets.Bucket, since: int, name: str | None = None
    ) -> list[usage_buckets.UsageBucketRow]:
        """Usage per key, model and hour or day from `since` (unix seconds) on."""
        with self._lock:
            return usage_buckets.read_buckets(self._db, bucket, since, name)

    def update_limits(self, name: str, limits: Mapping[str, int | None]) -> ApiKey:
        """Set max_concurrency / rpm / tpm of the active key `name`; raises UnknownKeyError."""
        key = self.find_active(name)
        if key is None:
            raise UnknownKeyError(f"no active key named {name!r}")
        fields = [f for f in ("max_concurrency", "rpm", "tpm") if f in limits]
        if fields:
            assignments = ", ".join(f"{f} = ?" for f in fields)
            values = [limits[f] for f in fields]
            with self._lock, self._db:
                self._db.execute(
                    f"UPDATE api_keys SET {assignments} WHERE key_id = ?", (*values, key.key_id)
                )
        return (
            self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key.key_id,)) or key
        )

    def _one(self, query: str, params: tuple[str, ...]) -> ApiKey | None:
        with self._lock:
            row = self._db.execute(query, params).fetchone()
        return None if row is None else _row_to_key(row)


def _add_column(db: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    """`ALTER TABLE table ADD COLUMN column kind` unless the table has it (older files)."""
    columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if column not in columns:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class UsageObject(TypedDict):
    """One usage row as the admin API and `llmserve keys usage --json` show it."""

    key_id: str
    key_name: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int
    rejections: int


def describe_usage(row: UsageRow) -> UsageObject:
    """One usage row as the admin API and `llmserve keys usage --json` show it."""
    return {
        "key_id": row.key_id,
        "key_name": row.key_name,
        "model": row.model,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "errors": row.errors,
        "rejections": row.rejections,
    }

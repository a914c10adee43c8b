"""The PostgreSQL schema: ordered migrations, applied at start, recorded in `schema_version`.

Migration N (1-based) is `MIGRATIONS[N - 1]`: append new ones, never edit an applied one. One
process at a time migrates (a transaction-scoped advisory lock); a database whose version is
newer than this llmserve knows is refused with one line, never half-used.
"""

from __future__ import annotations

from llmserve.database.postgres import Connection, Database
from llmserve.database.url import redacted

_LOCK_ID = 7_201_021  # pg_advisory_xact_lock key of the schema migration

_V1_KEYS = (
    """CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        disabled BOOLEAN NOT NULL DEFAULT FALSE,
        allowed_models TEXT,
        max_concurrency BIGINT NOT NULL,
        rpm BIGINT,
        tpm BIGINT,
        cache_group TEXT,
        max_storage_mb BIGINT
    )""",
    "CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE NOT disabled",
    """CREATE TABLE usage (
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        requests BIGINT NOT NULL DEFAULT 0,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        errors BIGINT NOT NULL DEFAULT 0,
        rejections BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, model)
    )""",
    """CREATE TABLE usage_buckets (
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        hour_start BIGINT NOT NULL,
        requests BIGINT NOT NULL DEFAULT 0,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        errors BIGINT NOT NULL DEFAULT 0,
        rejections BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, model, hour_start)
    )""",
)
_V1_JOBS = (
    """CREATE TABLE files (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT
    )""",
    """CREATE TABLE file_chunks (
        file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        chunk_no INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (file_id, chunk_no)
    )""",
    """CREATE TABLE batches (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        estimated_tokens BIGINT NOT NULL,
        doc TEXT NOT NULL,
        lease_holder TEXT NOT NULL DEFAULT '',
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX batches_owner_status ON batches (owner, status)",
    """CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
        line_no INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        is_error BOOLEAN NOT NULL,
        line TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        PRIMARY KEY (batch_id, line_no)
    )""",
    """CREATE TABLE responses (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        background BOOLEAN NOT NULL,
        response TEXT NOT NULL,
        request TEXT NOT NULL,
        lease_holder TEXT NOT NULL DEFAULT '',
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE response_events (
        response_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        event TEXT,
        packed BYTEA,
        PRIMARY KEY (response_id, seq)
    )""",
    """CREATE TABLE job_attempts (
        job_id TEXT NOT NULL,
        part INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (job_id, part)
    )""",
    """CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        metadata TEXT NOT NULL
    )""",
    """CREATE TABLE conversation_items (
        seq BIGSERIAL PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL
    )""",
    "CREATE INDEX conversation_items_by_conversation ON conversation_items (conversation_id, seq)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1_KEYS + _V1_JOBS,)
LATEST_VERSION = len(MIGRATIONS)


class SchemaTooNewError(ValueError):
    """The database was made (or migrated) by a newer llmserve."""


def schema_version(connection: Connection) -> int:
    """The version the database is at (0: empty)."""
    row = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(connection: Connection, url: str) -> int:
    """Bring the schema to `LATEST_VERSION` in the caller's transaction; the version it was at."""
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
    current = schema_version(connection)
    if current > LATEST_VERSION:
        raise SchemaTooNewError(
            f"the database at {redacted(url)} has schema version {current}, made by a newer "
            f"llmserve (this one knows versions up to {LATEST_VERSION}): upgrade llmserve, or "
            "use another database"
        )
    for version in range(current + 1, LATEST_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            connection.execute(statement)
        connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return current


def open_migrated(url: str, *, max_size: int) -> Database:
    """A pool on the database at `url`, its schema brought to `LATEST_VERSION` (closed again if
    that fails: a newer schema, an unreachable server)."""
    database = Database(url, max_size=max_size)
    try:
        with database.transaction() as connection:
            migrate(connection, url)
    except BaseException:
        database.close()
        raise
    return database

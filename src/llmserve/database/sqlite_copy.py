"""`llmserve db copy`: a home's SQLite state (keys, usage, files with their contents, batches,
result lines, stored responses and events, attempts, conversations) into PostgreSQL.

Rows keep their ids, key hashes and order, so keys keep working and clients' ids stay valid. The
copy is one transaction: the target holds all of it or none. Leases are not copied (a copied
running batch is taken up by the first server that asks).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from llmserve.database.migrations import migrate
from llmserve.database.postgres import Connection

CHUNK_BYTES = 1 << 20
Row = tuple[Any, ...]
_OWNED_TABLES = ("api_keys", "usage", "files", "batches", "responses", "conversations")


class TargetNotEmptyError(ValueError):
    """The PostgreSQL database already holds keys or jobs: copying would mix two services."""


@dataclass
class CopyCounts:
    """How many rows of each table were copied."""

    table_to_rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, num_rows: int) -> None:
        self.table_to_rows[table] = self.table_to_rows.get(table, 0) + num_rows


# (table, SELECT from SQLite, INSERT into PostgreSQL, convert one row)
_KEY_TABLES: tuple[tuple[str, str, str, Callable[[Row], Row]], ...] = (
    (
        "api_keys",
        "SELECT key_id, name, key_hash, hint, created_at, expires_at, disabled, allowed_models,"
        " max_concurrency, rpm, tpm, cache_group, max_storage_mb FROM api_keys ORDER BY created_at",
        "INSERT INTO api_keys (key_id, name, key_hash, hint, created_at, expires_at, disabled,"
        " allowed_models, max_concurrency, rpm, tpm, cache_group, max_storage_mb)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        lambda r: (*r[:6], bool(r[6]), *r[7:]),
    ),
    (
        "usage",
        "SELECT key_id, model, requests, prompt_tokens, completion_tokens, errors, rejections"
        " FROM usage",
        "INSERT INTO usage VALUES (%s, %s, %s, %s, %s, %s, %s)",
        lambda r: r,
    ),
    (
        "usage_buckets",
        "SELECT key_id, model, hour_start, requests, prompt_tokens, completion_tokens, errors,"
        " rejections FROM usage_buckets",
        "INSERT INTO usage_buckets VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        lambda r: r,
    ),
)
_JOB_TABLES: tuple[tuple[str, str, str, Callable[[Row], Row]], ...] = (
    (
        "batches",
        "SELECT id, owner, status, estimated_tokens, doc FROM batches ORDER BY seq",
        "INSERT INTO batches (id, owner, status, estimated_tokens, doc)"
        " VALUES (%s, %s, %s, %s, %s)",
        lambda r: r,
    ),
    (
        "batch_lines",
        "SELECT batch_id, line_no, custom_id, is_error, line, prompt_tokens, completion_tokens"
        " FROM batch_lines",
        "INSERT INTO batch_lines VALUES (%s, %s, %s, %s, %s, %s, %s)",
        lambda r: (*r[:3], bool(r[3]), *r[4:]),
    ),
    (
        "responses",
        "SELECT id, owner, status, background, response, request FROM responses ORDER BY seq",
        "INSERT INTO responses (id, owner, status, background, response, request)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        lambda r: (*r[:3], bool(r[3]), *r[4:]),
    ),
    (
        "response_events",
        "SELECT response_id, seq, event FROM response_events",
        "INSERT INTO response_events (response_id, seq, event, packed) VALUES (%s, %s, %s, %s)",
        lambda r: (r[0], r[1], None, r[2]) if isinstance(r[2], bytes) else (*r, None),
    ),
    (
        "job_attempts",
        "SELECT job_id, part, attempts FROM job_attempts",
        "INSERT INTO job_attempts VALUES (%s, %s, %s)",
        lambda r: r,
    ),
    (
        "conversations",
        "SELECT id, owner, created_at, metadata FROM conversations",
        "INSERT INTO conversations VALUES (%s, %s, %s, %s)",
        lambda r: r,
    ),
    (
        "conversation_items",
        "SELECT conversation_id, item_id, item FROM conversation_items ORDER BY seq",
        "INSERT INTO conversation_items (conversation_id, item_id, item) VALUES (%s, %s, %s)",
        lambda r: r,
    ),
)


def copy_home(key_db: Path, jobs_db: Path, url: str) -> CopyCounts:
    """Copy both SQLite files (either may be missing) into the database at `url`, at once."""
    counts = CopyCounts()
    with psycopg.connect(url) as connection:  # NOTE: one transaction, committed on exit
        migrate(connection, url)
        check_empty(connection)
        if key_db.exists():
            with closing(sqlite3.connect(key_db)) as source:
                _copy_tables(source, connection, _KEY_TABLES, counts)
        if jobs_db.exists():
            with closing(sqlite3.connect(jobs_db)) as source:
                _copy_files(source, connection, counts)
                _copy_tables(source, connection, _JOB_TABLES, counts)
    return counts


def check_empty(connection: Connection) -> None:
    """Refuse a database that already serves keys or jobs."""
    for table in _OWNED_TABLES:
        if connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            raise TargetNotEmptyError(
                f"the target database already holds {table}: copy into an empty database"
            )


def _copy_tables(
    source: sqlite3.Connection,
    target: Connection,
    tables: tuple[tuple[str, str, str, Callable[[Row], Row]], ...],
    counts: CopyCounts,
) -> None:
    for table, select, insert, convert in tables:
        with target.cursor() as cursor:
            for batch in _batches(source.execute(select)):
                cursor.executemany(insert, [convert(row) for row in batch])
                counts.add(table, len(batch))


def _copy_files(source: sqlite3.Connection, target: Connection, counts: CopyCounts) -> None:
    """Each file's record, and its contents read from its path in the home."""
    rows = source.execute(
        "SELECT id, owner, purpose, filename, bytes, created_at, expires_at, path FROM files "
        "ORDER BY seq"
    )
    for *record, path in rows:
        if not Path(path).exists():  # NOTE: contents deleted by hand: the file cannot be served
            counts.add("files skipped (contents missing)", 1)
            continue
        target.execute(
            "INSERT INTO files (id, owner, purpose, filename, bytes, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            record,
        )
        with open(path, "rb") as contents:
            chunk_no = 0
            while chunk := contents.read(CHUNK_BYTES):
                target.execute(
                    "INSERT INTO file_chunks (file_id, chunk_no, data) VALUES (%s, %s, %s)",
                    (record[0], chunk_no, chunk),
                )
                chunk_no += 1
        counts.add("files", 1)


def _batches(cursor: sqlite3.Cursor, size: int = 500) -> Iterator[list[Row]]:
    while batch := cursor.fetchmany(size):
        yield batch

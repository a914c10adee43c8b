"""The job store a server uses: SQLite in the home (default), a named SQLite file, or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from llmserve.database.url import parse_database_url
from llmserve.jobs.service import job_store_path
from llmserve.jobs.sqlite_store import SqliteJobStore
from llmserve.jobs.store import JobStore


def open_job_store(home: Path, database: str | None = None) -> JobStore:
    """The job store of `home`, or of `database` when one is named (the server's --database)."""
    if database is None:
        return SqliteJobStore(job_store_path(home))
    parsed = parse_database_url(database)
    if parsed.sqlite_path is not None:
        return SqliteJobStore(parsed.sqlite_path)
    from llmserve.jobs.postgres_store import PostgresJobStore  # NOTE: psycopg only when used

    return PostgresJobStore(parsed.url, home)

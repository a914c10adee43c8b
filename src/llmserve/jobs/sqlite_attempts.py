"""The attempts half of `SqliteJobStore`: how often each batch line or response was started."""

from __future__ import annotations

from pathlib import Path

from llmserve.jobs.sqlite_connection import SqliteConnection
from llmserve.jobs.sqlite_schema import ATTEMPTS_SCHEMA


class SqliteAttemptTables(SqliteConnection):
    """`start_attempt` of the `JobStore` protocol, in its own table (`job_attempts`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with self._write() as db:
            for statement in ATTEMPTS_SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def start_attempt(self, job_id: str, part: int) -> int:
        """Count one more start of (`job_id`, `part`), committed; the count including it."""
        with self._write() as db:
            db.execute(
                "INSERT INTO job_attempts (job_id, part, attempts) VALUES (?, ?, 1) "
                "ON CONFLICT (job_id, part) DO UPDATE SET attempts = attempts + 1",
                (job_id, part),
            )
            row = db.execute(
                "SELECT attempts FROM job_attempts WHERE job_id = ? AND part = ?", (job_id, part)
            ).fetchone()
        return int(row[0])

"""The storage half of `SqliteJobStore`: bytes kept per key, and what has expired.

Files expire at their `expires_at` (`expires_after`); stored responses and their events a
configured time after they were created (`jobs.response_ttl_days`). The sweeper
(`jobs/sweeper.py`) asks for them here and deletes them.
"""

from __future__ import annotations

import time
from pathlib import Path

from llmserve.jobs.sqlite_connection import SqliteConnection, sql_words
from llmserve.jobs.sqlite_schema import FILE_EXPIRY_COLUMN
from llmserve.jobs.store import FileRecord
from llmserve.jobs.transitions import CANCELLABLE_BATCH_STATUSES
from llmserve.statuses import ACTIVE_RESPONSE_STATUSES, BatchStatus, ResponseStatus

_COLUMNS = "id, owner, purpose, filename, bytes, created_at, path, expires_at"
_RUNNING = sql_words(ACTIVE_RESPONSE_STATUSES)
_CANCELLABLE = sql_words(CANCELLABLE_BATCH_STATUSES)
_BATCH_CANCELLING: BatchStatus = "cancelling"
_RESPONSE_CANCELLED: ResponseStatus = "cancelled"


class SqliteStorageTables(SqliteConnection):
    """Storage used per owner; expired files and responses, removed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        table, column, kind = FILE_EXPIRY_COLUMN
        with self._write() as db:
            names = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in names:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def storage_used(self, owner: str) -> int:
        """Bytes of the owner's files (uploads and batch results) not yet expired or deleted."""
        rows = self._read(
            "SELECT COALESCE(SUM(bytes), 0) FROM files WHERE owner = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (owner, time.time()),
        )
        return int(str(rows[0][0]))

    def pop_expired_files(self, now: float) -> list[FileRecord]:
        """Remove the rows of files expired by `now`; their records, to delete the contents."""
        with self._write() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).fetchall()
            db.executemany("DELETE FROM files WHERE id = ?", [(row[0],) for row in rows])
        return [FileRecord(*row) for row in rows]

    def cancel_jobs_of(self, owner: str, now: int) -> tuple[int, int]:
        """Stop every unfinished job of a revoked key: its batches `cancelling` (the runner ends
        them `cancelled`), its background responses `cancelled`; (batches, responses) stopped."""
        with self._write() as db:
            batches = db.execute(
                "UPDATE batches SET status = ?, doc = json_set(doc, '$.status', ?, "
                f"'$.cancelling_at', ?) WHERE owner = ? AND status IN {_CANCELLABLE}",
                (_BATCH_CANCELLING, _BATCH_CANCELLING, now, owner),
            ).rowcount
            responses = db.execute(
                "UPDATE responses SET status = ?, response = json_set(response, '$.status', ?) "
                f"WHERE owner = ? AND background = 1 AND status IN {_RUNNING}",
                (_RESPONSE_CANCELLED, _RESPONSE_CANCELLED, owner),
            ).rowcount
        return batches, responses

    def delete_responses_before(self, created_before: float) -> int:
        """Delete ended responses created before then, with their events; how many."""
        with self._write() as db:
            ids = [
                (row[0],)
                for row in db.execute(
                    "SELECT id FROM responses WHERE status NOT IN " + _RUNNING + " AND "
                    "CAST(json_extract(response, '$.created_at') AS REAL) < ?",
                    (created_before,),
                )
            ]
            db.executemany("DELETE FROM response_events WHERE response_id = ?", ids)
            db.executemany("DELETE FROM responses WHERE id = ?", ids)
        return len(ids)

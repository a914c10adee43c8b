"""`PostgresJobStore`: the job store in PostgreSQL, shared by every process and node.

The same contract as `SqliteJobStore` (`store.JobStore`). Leases use PostgreSQL's queue pattern:
a runner claims the oldest free batch with `SELECT … FOR UPDATE SKIP LOCKED`, so any number of
processes take up work and none takes a batch another holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from llmserve.jobs.postgres_conversations import PostgresConversationTables
from llmserve.jobs.postgres_responses import PostgresResponseTables
from llmserve.jobs.postgres_tables import Row
from llmserve.jobs.store import BatchRecord, FileRecord, JobCounts, LineResult, Page
from llmserve.jobs.transitions import check_batch_transition
from llmserve.jobs.wire import BatchObject, BatchUpdate
from llmserve.statuses import ACTIVE_BATCH_STATUSES, BatchStatus, LineOutcome, batch_status

_FILE_COLUMNS = "id, owner, purpose, filename, bytes, created_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > EXTRACT(EPOCH FROM now()))"
_BATCH_COLUMNS = "id, owner, status, estimated_tokens, doc"
_ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_BATCH_STATUSES)


class PostgresJobStore(PostgresResponseTables, PostgresConversationTables):
    """Implements `JobStore` on PostgreSQL (files and batches here, the rest in the bases)."""

    def __init__(self, url: str, home: Path) -> None:
        super().__init__(url, home)

    # files

    def add_file(self, record: FileRecord) -> None:
        """Store the file's record and its contents (read from `record.path`) together."""
        with self._tx() as connection:
            connection.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (record.id, record.owner, record.purpose, record.filename, record.bytes,
                 record.created_at, record.expires_at),
            )  # fmt: skip
            self._store_contents(connection, record)

    def get_file(self, owner: str | None, file_id: str) -> FileRecord | None:
        query = f"SELECT {_FILE_COLUMNS} FROM files WHERE id = %s AND {_LIVE}"
        rows = self._rows(query, (file_id,))
        if not rows or owner not in (None, rows[0][1]):
            return None
        record = self._file_of(rows[0])
        self._local_copy(file_id)
        return record

    def list_files(
        self, owner: str | None, *, after: str | None, limit: int, purpose: str | None
    ) -> Page[FileRecord]:
        where, params = _page_filter("files", owner, after)
        where += f" AND {_LIVE}"
        if purpose is not None:
            where, params = f"{where} AND purpose = %s", (*params, purpose)
        rows = self._rows(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE {where} ORDER BY seq DESC LIMIT %s",
            (*params, limit + 1),
        )
        return Page([self._file_of(row) for row in rows[:limit]], has_more=len(rows) > limit)

    def delete_file(self, owner: str | None, file_id: str) -> FileRecord | None:
        """Delete the record and its contents (this process's copy: `files.delete_contents`)."""
        clause = "" if owner is None else " AND owner = %s"
        with self._tx() as connection:
            row = connection.execute(
                f"DELETE FROM files WHERE id = %s{clause} AND {_LIVE} RETURNING {_FILE_COLUMNS}",
                (file_id,) if owner is None else (file_id, owner),
            ).fetchone()
        return None if row is None else self._file_of(row)

    def _file_of(self, row: Row) -> FileRecord:
        file_id, owner, purpose, filename, num_bytes, created_at, expires_at = row
        return FileRecord(
            file_id, owner, purpose, filename, int(num_bytes), int(created_at),
            str(self._cache_path(file_id)), None if expires_at is None else int(expires_at),
        )  # fmt: skip

    # batches

    def add_batch(self, record: BatchRecord) -> None:
        with self._tx() as connection:
            connection.execute(
                f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                (record.id, record.owner, record.status, record.estimated_tokens,
                 json.dumps(record.doc)),
            )  # fmt: skip

    def get_batch(self, owner: str | None, batch_id: str) -> BatchRecord | None:
        rows = self._rows(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = %s", (batch_id,))
        record = _batch_of(rows[0]) if rows else None
        return record if record is not None and owner in (None, record.owner) else None

    def list_batches(
        self, owner: str | None, *, after: str | None, limit: int
    ) -> Page[BatchRecord]:
        where, params = _page_filter("batches", owner, after)
        rows = self._rows(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE {where} ORDER BY seq DESC LIMIT %s",
            (*params, limit + 1),
        )
        return Page([_batch_of(row) for row in rows[:limit]], has_more=len(rows) > limit)

    def update_batch(self, batch_id: str, status: BatchStatus, fields: BatchUpdate) -> BatchRecord:
        """Set the status and merge `fields` into the batch's document (row locked meanwhile)."""
        with self._tx() as connection:
            row = connection.execute(
                f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = %s FOR UPDATE", (batch_id,)
            ).fetchone()
            if row is None:
                raise KeyError(batch_id)
            record = _batch_of(row)
            check_batch_transition(batch_id, record.status, status)
            record.status = status
            record.doc = {**record.doc, **fields, "status": status}
            connection.execute(
                "UPDATE batches SET status = %s, doc = %s WHERE id = %s",
                (status, json.dumps(record.doc), batch_id),
            )
            return record

    def enqueued_tokens(self, owner: str) -> int:
        """The estimated tokens of the owner's batches that have not ended."""
        rows = self._rows(
            "SELECT COALESCE(SUM(estimated_tokens), 0) FROM batches "
            f"WHERE owner = %s AND status IN ({_ACTIVE})",
            (owner,),
        )
        return int(rows[0][0])

    def job_counts(self) -> JobCounts:
        """Batches by status and lines done by outcome, across every owner."""
        batches = self._rows("SELECT status, COUNT(*) FROM batches GROUP BY status")
        lines = self._rows("SELECT is_error, COUNT(*) FROM batch_lines GROUP BY is_error")
        by_outcome: dict[LineOutcome, int] = {
            ("failed" if is_error else "completed"): int(count) for is_error, count in lines
        }
        return JobCounts(
            {batch_status(str(status)): int(count) for status, count in batches}, by_outcome
        )

    def claim_batch(self, holder: str, lease_s: float) -> BatchRecord | None:
        """The oldest unfinished batch nobody holds (or whose holder let the lease lapse)."""
        now = time.time()
        with self._tx() as connection:
            row = connection.execute(
                f"UPDATE batches SET lease_holder = %s, lease_until = %s WHERE id = ("
                f"SELECT id FROM batches WHERE status IN ({_ACTIVE}) "
                "AND (lease_until < %s OR lease_holder = %s) ORDER BY seq LIMIT 1 "
                f"FOR UPDATE SKIP LOCKED) RETURNING {_BATCH_COLUMNS}",
                (holder, now + lease_s, now, holder),
            ).fetchone()
        return None if row is None else _batch_of(row)

    def renew_batch(self, batch_id: str, holder: str, lease_s: float) -> bool:
        """Extend the lease; False when another holder has it now."""
        with self._tx() as connection:
            cursor = connection.execute(
                "UPDATE batches SET lease_until = %s WHERE id = %s AND lease_holder = %s",
                (time.time() + lease_s, batch_id, holder),
            )
            return cursor.rowcount == 1

    def release_batch(self, batch_id: str, holder: str) -> None:
        with self._tx() as connection:
            connection.execute(
                "UPDATE batches SET lease_holder = '', lease_until = 0 "
                "WHERE id = %s AND lease_holder = %s",
                (batch_id, holder),
            )

    def record_line(self, batch_id: str, result: LineResult) -> bool:
        """Store one finished line and count it; False when that line was already stored."""
        with self._tx() as connection:
            # NOTE: the batch row is locked first: the line's foreign key check takes a share
            # lock on it, and two runners upgrading shared locks would deadlock
            row = connection.execute(
                "SELECT doc FROM batches WHERE id = %s FOR UPDATE", (batch_id,)
            ).fetchone()
            if row is None:
                raise KeyError(batch_id)
            cursor = connection.execute(
                "INSERT INTO batch_lines (batch_id, line_no, custom_id, is_error, line,"
                " prompt_tokens, completion_tokens) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (batch_id, result.line_no, result.custom_id, result.is_error,
                 json.dumps(result.line), result.prompt_tokens, result.completion_tokens),
            )  # fmt: skip
            if cursor.rowcount != 1:
                return False
            doc = json.loads(row[0])
            _count_line(doc, result)
            connection.execute(
                "UPDATE batches SET doc = %s WHERE id = %s", (json.dumps(doc), batch_id)
            )
            return True

    def done_line_numbers(self, batch_id: str) -> set[int]:
        rows = self._rows("SELECT line_no FROM batch_lines WHERE batch_id = %s", (batch_id,))
        return {int(row[0]) for row in rows}

    def result_lines(self, batch_id: str) -> list[LineResult]:
        rows = self._rows(
            "SELECT line_no, custom_id, is_error, line, prompt_tokens, completion_tokens "
            "FROM batch_lines WHERE batch_id = %s ORDER BY line_no",
            (batch_id,),
        )
        return [
            LineResult(int(n), str(c), bool(e), json.loads(line), int(p), int(o))
            for n, c, e, line, p, o in rows
        ]


def _page_filter(table: str, owner: str | None, after: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause of one page: the owner's rows (all for the admin) older than `after`."""
    clauses, params = ["TRUE"], []
    if owner is not None:
        clauses.append("owner = %s")
        params.append(owner)
    if after is not None:
        # NOTE: the cursor is found among the caller's own rows only (as in SQLite)
        mine = "" if owner is None else " AND owner = %s"
        clauses.append(f"seq < COALESCE((SELECT seq FROM {table} WHERE id = %s{mine}), -1)")
        params.extend([after] if owner is None else [after, owner])
    return " AND ".join(clauses), tuple(params)


def _batch_of(row: Row) -> BatchRecord:
    batch_id, owner, status, tokens, doc = row
    document: BatchObject = json.loads(doc)
    return BatchRecord(str(batch_id), str(owner), batch_status(str(status)), int(tokens), document)


def _count_line(doc: BatchObject, result: LineResult) -> None:
    """Add one finished line to the batch's `request_counts` and `usage`."""
    counts = doc["request_counts"]
    counts["failed" if result.is_error else "completed"] += 1
    usage = doc["usage"]
    usage["input_tokens"] += result.prompt_tokens
    usage["output_tokens"] += result.completion_tokens
    usage["total_tokens"] += result.prompt_tokens + result.completion_tokens

"""`SqliteJobStore`: the job store in one SQLite file (WAL) in the llmserve home.

Several processes may share the file (see `sqlite_connection.py`); batches and background
responses are held by leases with an expiry, so a batch whose process died is taken up by the
next runner that asks.
"""

from __future__ import annotations

import json
import sqlite3
import time

from llmserve.jobs.sqlite_attempts import SqliteAttemptTables
from llmserve.jobs.sqlite_connection import sql_words
from llmserve.jobs.sqlite_conversations import SqliteConversationTables
from llmserve.jobs.sqlite_responses import SqliteResponseTables
from llmserve.jobs.sqlite_storage import SqliteStorageTables
from llmserve.jobs.store import BatchRecord, FileRecord, JobCounts, LineResult, Page
from llmserve.jobs.transitions import check_batch_transition
from llmserve.jobs.wire import BatchObject, BatchUpdate
from llmserve.statuses import ACTIVE_BATCH_STATUSES, BatchStatus, LineOutcome, batch_status

_FILE_COLUMNS = "id, owner, purpose, filename, bytes, created_at, path, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > CAST(strftime('%s', 'now') AS INTEGER))"
_ACTIVE = sql_words(ACTIVE_BATCH_STATUSES)


class SqliteJobStore(
    SqliteStorageTables, SqliteResponseTables, SqliteAttemptTables, SqliteConversationTables
):
    """Implements `JobStore` on SQLite (files and batches here, responses in the base class)."""

    # files

    def add_file(self, record: FileRecord) -> None:
        with self._write() as db:
            db.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.owner, record.purpose, record.filename, record.bytes,
                 record.created_at, record.path, record.expires_at),
            )  # fmt: skip

    def get_file(self, owner: str | None, file_id: str) -> FileRecord | None:
        rows = self._read(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ? AND {_LIVE}", (file_id,))
        record = FileRecord(*rows[0]) if rows else None  # type: ignore[arg-type]
        return record if record is not None and owner in (None, record.owner) else None

    def list_files(
        self, owner: str | None, *, after: str | None, limit: int, purpose: str | None
    ) -> Page[FileRecord]:
        where, params = _page_filter("files", owner, after)
        where += f" AND {_LIVE}"
        if purpose is not None:
            where, params = f"{where} AND purpose = ?", (*params, purpose)
        rows = self._read(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE {where} ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        )
        items = [FileRecord(*row) for row in rows[:limit]]  # type: ignore[arg-type]
        return Page(items, has_more=len(rows) > limit)

    def delete_file(self, owner: str | None, file_id: str) -> FileRecord | None:
        record = self.get_file(owner, file_id)
        if record is not None:
            with self._write() as db:
                db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        return record

    # batches

    def add_batch(self, record: BatchRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO batches (id, owner, status, estimated_tokens, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.id, record.owner, record.status, record.estimated_tokens,
                 json.dumps(record.doc)),
            )  # fmt: skip

    def get_batch(self, owner: str | None, batch_id: str) -> BatchRecord | None:
        with self._lock:
            record = _batch(self._db, batch_id)
        return record if record is not None and owner in (None, record.owner) else None

    def job_counts(self) -> JobCounts:
        """Batches by status and lines done by outcome, across every owner."""
        batches = self._read("SELECT status, COUNT(*) FROM batches GROUP BY status", ())
        lines = self._read("SELECT is_error, COUNT(*) FROM batch_lines GROUP BY is_error", ())
        by_outcome: dict[LineOutcome, int] = {
            ("failed" if is_error else "completed"): int(str(count)) for is_error, count in lines
        }
        return JobCounts(
            {batch_status(str(status)): int(str(count)) for status, count in batches}, by_outcome
        )

    def list_batches(
        self, owner: str | None, *, after: str | None, limit: int
    ) -> Page[BatchRecord]:
        where, params = _page_filter("batches", owner, after)
        rows = self._read(
            f"SELECT id, owner, status, estimated_tokens, doc FROM batches WHERE {where} "
            "ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        )
        return Page([_batch_of(row) for row in rows[:limit]], has_more=len(rows) > limit)

    def update_batch(self, batch_id: str, status: BatchStatus, fields: BatchUpdate) -> BatchRecord:
        """Set the status and merge `fields` into the batch's document."""
        with self._write() as db:
            record = _batch(db, batch_id)
            if record is None:
                raise KeyError(batch_id)
            check_batch_transition(batch_id, record.status, status)
            record.status = status
            record.doc = {**record.doc, **fields, "status": status}
            db.execute(
                "UPDATE batches SET status = ?, doc = ? WHERE id = ?",
                (status, json.dumps(record.doc), batch_id),
            )
            return record

    def enqueued_tokens(self, owner: str) -> int:
        """The estimated tokens of the owner's batches that have not ended."""
        rows = self._read(
            f"SELECT COALESCE(SUM(estimated_tokens), 0) FROM batches "
            f"WHERE owner = ? AND status IN {_ACTIVE}",
            (owner,),
        )
        total: int = rows[0][0]  # type: ignore[assignment]
        return total

    def claim_batch(self, holder: str, lease_s: float) -> BatchRecord | None:
        """The oldest unfinished batch nobody holds (or whose holder let the lease lapse)."""
        now = time.time()
        with self._write() as db:
            row = db.execute(
                f"SELECT id FROM batches WHERE status IN {_ACTIVE} "
                "AND (lease_until < ? OR lease_holder = ?) ORDER BY seq LIMIT 1",
                (now, holder),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE batches SET lease_holder = ?, lease_until = ? WHERE id = ?",
                (holder, now + lease_s, row[0]),
            )
            return _batch(db, row[0])

    def renew_batch(self, batch_id: str, holder: str, lease_s: float) -> bool:
        """Extend the lease; False when another holder has it now."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE batches SET lease_until = ? WHERE id = ? AND lease_holder = ?",
                (time.time() + lease_s, batch_id, holder),
            )
            return cursor.rowcount == 1

    def release_batch(self, batch_id: str, holder: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE batches SET lease_holder = '', lease_until = 0 "
                "WHERE id = ? AND lease_holder = ?",
                (batch_id, holder),
            )

    def record_line(self, batch_id: str, result: LineResult) -> bool:
        """Store one finished line and count it; False when that line was already stored."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO batch_lines (batch_id, line_no, custom_id, is_error, line,"
                " prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch_id, result.line_no, result.custom_id, int(result.is_error),
                 json.dumps(result.line), result.prompt_tokens, result.completion_tokens),
            )  # fmt: skip
            if cursor.rowcount != 1:
                return False
            record = _batch(db, batch_id)
            assert record is not None  # NOTE: lines reference their batch (foreign key)
            _count_line(record.doc, result)
            db.execute(
                "UPDATE batches SET doc = ? WHERE id = ?", (json.dumps(record.doc), batch_id)
            )
            return True

    def done_line_numbers(self, batch_id: str) -> set[int]:
        rows = self._read("SELECT line_no FROM batch_lines WHERE batch_id = ?", (batch_id,))
        return {int(row[0]) for row in rows}  # type: ignore[call-overload]

    def result_lines(self, batch_id: str) -> list[LineResult]:
        rows = self._read(
            "SELECT line_no, custom_id, is_error, line, prompt_tokens, completion_tokens "
            "FROM batch_lines WHERE batch_id = ? ORDER BY line_no",
            (batch_id,),
        )
        return [
            LineResult(int(n), str(c), bool(e), json.loads(str(line)), int(p), int(o))  # type: ignore[call-overload]
            for n, c, e, line, p, o in rows
        ]


def _page_filter(table: str, owner: str | None, after: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause of one page: the owner's rows (all for the admin) older than `after`."""
    clauses, params = ["1 = 1"], []
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    if after is not None:
        # NOTE: the cursor is found among the caller's own rows only: another key's id reads
        # exactly like an unknown one (an empty page), never confirming that it exists.
        mine = "" if owner is None else " AND owner = ?"
        clauses.append(f"seq < COALESCE((SELECT seq FROM {table} WHERE id = ?{mine}), -1)")
        params.extend([after] if owner is None else [after, owner])
    return " AND ".join(clauses), tuple(params)


def _batch(db: sqlite3.Connection, batch_id: str) -> BatchRecord | None:
    row = db.execute(
        "SELECT id, owner, status, estimated_tokens, doc FROM batches WHERE id = ?", (batch_id,)
    ).fetchone()
    return None if row is None else _batch_of(row)


def _batch_of(row: tuple[object, ...]) -> BatchRecord:
    batch_id, owner, status, tokens, doc = row
    document: BatchObject = json.loads(str(doc))
    return BatchRecord(
        str(batch_id), str(owner), batch_status(str(status)), int(str(tokens)), document
    )


def _count_line(doc: BatchObject, result: LineResult) -> None:
    """Add one finished line to the batch's `request_counts` and `usage`."""
    counts = doc["request_counts"]
    if result.is_error:
        counts["failed"] += 1
    else:
        counts["completed"] += 1
    usage = doc["usage"]
    usage["input_tokens"] += result.prompt_tokens
    usage["output_tokens"] += result.completion_tokens
    usage["total_tokens"] += result.prompt_tokens + result.completion_tokens

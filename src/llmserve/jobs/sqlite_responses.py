"""Stored responses and their events, on the job store's SQLite connection."""

from __future__ import annotations

import json
import time
import zlib

from llmserve.jobs.sqlite_connection import SqliteConnection, sql_words
from llmserve.jobs.store import ResponseRecord
from llmserve.serving.response_objects import ResponseEvent
from llmserve.statuses import ACTIVE_RESPONSE_STATUSES, response_status

_RESPONSE_COLUMNS = "id, owner, status, response, request, background"
_RUNNING = sql_words(ACTIVE_RESPONSE_STATUSES)


class SqliteResponseTables(SqliteConnection):
    """The response half of `SqliteJobStore`."""

    def put_response(self, record: ResponseRecord) -> None:
        """Insert or replace a response (its owner never changes)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO responses (id, owner, status, background, response, request) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status,"
                " response = excluded.response, request = excluded.request"
                " WHERE responses.owner = excluded.owner",
                (record.id, record.owner, record.status, int(record.is_background),
                 json.dumps(record.response), json.dumps(record.request)),
            )  # fmt: skip

    def get_response(self, owner: str | None, response_id: str) -> ResponseRecord | None:
        rows = self._read(
            "SELECT id, owner, status, response, request, background FROM responses WHERE id = ?",
            (response_id,),
        )
        record = _response_of(rows[0]) if rows else None
        return record if record is not None and owner in (None, record.owner) else None

    def delete_response(self, owner: str | None, response_id: str) -> bool:
        if self.get_response(owner, response_id) is None:
            return False
        with self._write() as db:
            db.execute("DELETE FROM response_events WHERE response_id = ?", (response_id,))
            db.execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return True

    def claim_response(self, holder: str, lease_s: float) -> ResponseRecord | None:
        """A background response that is queued, or was running when its holder died."""
        now = time.time()
        with self._write() as db:
            row = db.execute(
                f"SELECT id FROM responses WHERE background = 1 AND status IN {_RUNNING} "
                "AND lease_until < ? ORDER BY seq LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE responses SET lease_holder = ?, lease_until = ? WHERE id = ?",
                (holder, now + lease_s, row[0]),
            )
            found = db.execute(
                "SELECT id, owner, status, response, request, background FROM responses "
                "WHERE id = ?",
                (row[0],),
            ).fetchone()
            return _response_of(found)

    def renew_response(self, response_id: str, holder: str, lease_s: float) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE responses SET lease_until = ? WHERE id = ? AND lease_holder = ?",
                (time.time() + lease_s, response_id, holder),
            )
            return cursor.rowcount == 1

    def add_event(self, response_id: str, sequence_number: int, event: ResponseEvent) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO response_events (response_id, seq, event) VALUES (?, ?, ?)",
                (response_id, sequence_number, json.dumps(event)),
            )

    def add_events(self, response_id: str, events: list[ResponseEvent]) -> None:
        """Store a run of events as one compressed row, keyed by its last sequence number."""
        if not events:
            return
        packed = zlib.compress(json.dumps(events, separators=(",", ":")).encode(), 6)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO response_events (response_id, seq, event) VALUES (?, ?, ?)",
                (response_id, events[-1]["sequence_number"], packed),
            )

    def events_after(self, response_id: str, sequence_number: int) -> list[ResponseEvent]:
        rows = self._read(
            "SELECT event FROM response_events WHERE response_id = ? AND seq > ? ORDER BY seq",
            (response_id, sequence_number),
        )
        events = [event for row in rows for event in _unpack(row[0])]
        return [event for event in events if event["sequence_number"] > sequence_number]


def _unpack(stored: object) -> list[ResponseEvent]:
    """The events of one row: a compressed run (`add_events`) or one JSON event (`add_event`)."""
    if isinstance(stored, bytes):
        events: list[ResponseEvent] = json.loads(zlib.decompress(stored))
        return events
    return [json.loads(str(stored))]


def _response_of(row: tuple[object, ...]) -> ResponseRecord:
    response_id, owner, status, response, request, background = row
    return ResponseRecord(
        str(response_id), str(owner), response_status(str(status)), json.loads(str(response)),
        json.loads(str(request)), bool(background),
    )  # fmt: skip

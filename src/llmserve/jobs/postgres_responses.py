"""Stored responses and their events, attempts, storage and expiry, for `PostgresJobStore`."""

from __future__ import annotations

import json
import time
import zlib

from llmserve.jobs.postgres_tables import PostgresTables, Row
from llmserve.jobs.store import FileRecord, ResponseRecord
from llmserve.serving.response_objects import ResponseEvent
from llmserve.statuses import ACTIVE_RESPONSE_STATUSES, response_status

_RESPONSE_COLUMNS = "id, owner, status, response, request, background"
_RUNNING = "(" + ", ".join(f"'{status}'" for status in ACTIVE_RESPONSE_STATUSES) + ")"


class PostgresResponseTables(PostgresTables):
    """The response, attempt and storage half of `PostgresJobStore`."""

    def put_response(self, record: ResponseRecord) -> None:
        """Insert or replace a response (its owner never changes)."""
        with self._tx() as connection:
            connection.execute(
                "INSERT INTO responses AS r (id, owner, status, background, response, request) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " status = excluded.status, response = excluded.response,"
                " request = excluded.request WHERE r.owner = excluded.owner",
                (record.id, record.owner, record.status, record.is_background,
                 json.dumps(record.response), json.dumps(record.request)),
            )  # fmt: skip

    def get_response(self, owner: str | None, response_id: str) -> ResponseRecord | None:
        query = f"SELECT {_RESPONSE_COLUMNS} FROM responses WHERE id = %s"
        rows = self._rows(query, (response_id,))
        record = _response_of(rows[0]) if rows else None
        return record if record is not None and owner in (None, record.owner) else None

    def delete_response(self, owner: str | None, response_id: str) -> bool:
        clause = "" if owner is None else " AND owner = %s"
        with self._tx() as connection:
            deleted = connection.execute(
                f"DELETE FROM responses WHERE id = %s{clause}",
                (response_id,) if owner is None else (response_id, owner),
            ).rowcount
            if deleted:
                connection.execute(
                    "DELETE FROM response_events WHERE response_id = %s", (response_id,)
                )
        return bool(deleted)

    def claim_response(self, holder: str, lease_s: float) -> ResponseRecord | None:
        """A background response that is queued, or was running when its holder died."""
        now = time.time()
        with self._tx() as connection:
            row = connection.execute(
                "UPDATE responses SET lease_holder = %s, lease_until = %s WHERE id = ("
                f"SELECT id FROM responses WHERE background AND status IN {_RUNNING} "
                "AND lease_until < %s ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {_RESPONSE_COLUMNS}",
                (holder, now + lease_s, now),
            ).fetchone()
        return None if row is None else _response_of(row)

    def renew_response(self, response_id: str, holder: str, lease_s: float) -> bool:
        with self._tx() as connection:
            cursor = connection.execute(
                "UPDATE responses SET lease_until = %s WHERE id = %s AND lease_holder = %s",
                (time.time() + lease_s, response_id, holder),
            )
            return cursor.rowcount == 1

    def add_event(self, response_id: str, sequence_number: int, event: ResponseEvent) -> None:
        self._put_event(response_id, sequence_number, json.dumps(event), None)

    def add_events(self, response_id: str, events: list[ResponseEvent]) -> None:
        """Store a run of events as one compressed row, keyed by its last sequence number."""
        if events:
            packed = zlib.compress(json.dumps(events, separators=(",", ":")).encode(), 6)
            self._put_event(response_id, int(events[-1]["sequence_number"]), None, packed)

    def _put_event(
        self, response_id: str, seq: int, event: str | None, packed: bytes | None
    ) -> None:
        with self._tx() as connection:
            connection.execute(
                "INSERT INTO response_events (response_id, seq, event, packed) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (response_id, seq) DO UPDATE SET "
                "event = excluded.event, packed = excluded.packed",
                (response_id, seq, event, packed),
            )

    def events_after(self, response_id: str, sequence_number: int) -> list[ResponseEvent]:
        rows = self._rows(
            "SELECT event, packed FROM response_events WHERE response_id = %s AND seq > %s "
            "ORDER BY seq",
            (response_id, sequence_number),
        )
        events: list[ResponseEvent] = []
        for event, packed in rows:
            events.extend(json.loads(zlib.decompress(packed)) if packed else [json.loads(event)])
        return [event for event in events if event["sequence_number"] > sequence_number]

    def start_attempt(self, job_id: str, part: int) -> int:
        """Count one more start of (`job_id`, `part`), committed; the count including it."""
        rows = self._rows(
            "INSERT INTO job_attempts AS a (job_id, part, attempts) VALUES (%s, %s, 1) "
            "ON CONFLICT (job_id, part) DO UPDATE SET attempts = a.attempts + 1 "
            "RETURNING attempts",
            (job_id, part),
        )
        return int(rows[0][0])

    def storage_used(self, owner: str) -> int:
        """Bytes of the owner's files (uploads and batch results) not yet expired or deleted."""
        rows = self._rows(
            "SELECT COALESCE(SUM(bytes), 0) FROM files WHERE owner = %s "
            "AND (expires_at IS NULL OR expires_at > %s)",
            (owner, time.time()),
        )
        return int(rows[0][0])

    def pop_expired_files(self, now: float) -> list[FileRecord]:
        """Remove the files expired by `now` (contents too); their records, for local copies."""
        rows = self._rows(
            "DELETE FROM files WHERE expires_at IS NOT NULL AND expires_at <= %s "
            "RETURNING id, owner, purpose, filename, bytes, created_at, expires_at",
            (now,),
        )
        return [
            FileRecord(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), str(self._cache_path(r[0])),
                       int(r[6]))
            for r in rows
        ]  # fmt: skip

    def cancel_jobs_of(self, owner: str, now: int) -> tuple[int, int]:
        """Stop every unfinished job of a revoked key: its batches `cancelling` (the runner ends
        them `cancelled`), its background responses `cancelled`; (batches, responses) stopped."""
        with self._tx() as connection:
            batches = connection.execute(
                "SELECT id, doc FROM batches WHERE owner = %s AND status IN "
                "('validating', 'in_progress') FOR UPDATE",
                (owner,),
            ).fetchall()
            for batch_id, doc in batches:
                updated = {**json.loads(doc), "status": "cancelling", "cancelling_at": now}
                connection.execute(
                    "UPDATE batches SET status = 'cancelling', doc = %s WHERE id = %s",
                    (json.dumps(updated), batch_id),
                )
            responses = connection.execute(
                "SELECT id, response FROM responses WHERE owner = %s AND background "
                f"AND status IN {_RUNNING} FOR UPDATE",
                (owner,),
            ).fetchall()
            for response_id, response in responses:
                updated = {**json.loads(response), "status": "cancelled"}
                connection.execute(
                    "UPDATE responses SET status = 'cancelled', response = %s WHERE id = %s",
                    (json.dumps(updated), response_id),
                )
        return len(batches), len(responses)

    def delete_responses_before(self, created_before: float) -> int:
        """Delete ended responses created before then, with their events; how many."""
        with self._tx() as connection:
            ids = connection.execute(
                f"DELETE FROM responses WHERE status NOT IN {_RUNNING} AND "
                "CAST(response::jsonb ->> 'created_at' AS DOUBLE PRECISION) < %s RETURNING id",
                (created_before,),
            ).fetchall()
            connection.execute(
                "DELETE FROM response_events WHERE response_id = ANY(%s)", ([i for (i,) in ids],)
            )
        return len(ids)


def _response_of(row: Row) -> ResponseRecord:
    response_id, owner, status, response, request, background = row
    return ResponseRecord(
        str(response_id), str(owner), response_status(str(status)), json.loads(response),
        json.loads(request),
        bool(background),
    )  # fmt: skip

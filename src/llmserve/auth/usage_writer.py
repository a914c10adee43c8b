"""Usage written to SQLite from a thread of its own, as a request runs, so none is ever lost.

The event loop only merges deltas into a pending map (no I/O); one writer thread writes what piled
up in one transaction. While another process holds the database's write lock the deltas keep
merging (memory stays bounded: one row per key and model) and are retried until the lock is free.

A request is written at admission (one request, its prompt tokens), then about once a second
while it streams (the tokens sent so far), then at its end (the rest, and whether it failed): a
server killed mid-stream loses at most the last second of a request's tokens, never the request.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import psycopg

from llmserve.auth.base import UsageRecord
from llmserve.auth.store import UsageDelta
from llmserve.errors import OverloadedError

if TYPE_CHECKING:
    from llmserve.auth.key_store import KeyStore

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0  # a streaming request's tokens are written at least this often
RETRY_PAUSE_S = 0.5  # after a failed write (the database is locked), wait this long


class UsageWriter:
    """Adds usage deltas to a key store from one daemon thread."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store  # the writer's own connection: readers never wait behind it
        self._pending: dict[tuple[str, str], UsageDelta] = {}
        self._changed = threading.Condition()
        self._num_added = 0
        self._num_written = 0  # of the deltas added, how many are committed
        self._is_closing = False
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def add(self, key_id: str, model: str, delta: UsageDelta) -> None:
        """Queue `delta` for the key's totals on `model`; never blocks on SQLite."""
        with self._changed:
            key = (key_id, model)
            self._pending[key] = self._pending.get(key, UsageDelta()) + delta
            self._num_added += 1
            self._changed.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every delta added so far is committed; False if `timeout_s` passed first."""
        with self._changed:
            target = self._num_added
            return self._changed.wait_for(lambda: self._num_written >= target, timeout_s)

    def close(self, timeout_s: float) -> None:
        """Write what is pending (waiting up to `timeout_s`), then stop the thread."""
        if not self.flush(timeout_s):
            logger.warning("usage of %d keys and models was not written", len(self._pending))
        with self._changed:
            self._is_closing = True
            self._changed.notify_all()
        self._thread.join(timeout_s)
        self._store.close()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._is_closing)
                if self._is_closing:
                    return
                batch, self._pending = self._pending, {}
                num_in_batch = self._num_added
            if self._write(batch):
                with self._changed:
                    self._num_written = num_in_batch
                    self._changed.notify_all()

    def _write(self, batch: dict[tuple[str, str], UsageDelta]) -> bool:
        try:
            self._store.add_usage(batch)
            return True
        # locked past the busy timeout, or PostgreSQL away: merge back and retry
        except (sqlite3.Error, psycopg.Error, OverloadedError) as exc:
            logger.warning("could not write usage (%s); retrying", exc)
            with self._changed:
                for key, delta in self._pending.items():
                    batch[key] = batch.get(key, UsageDelta()) + delta
                self._pending = batch
                self._changed.wait(RETRY_PAUSE_S)
            return False


class RequestUsage:
    """One request's running totals, turned into deltas for the writer as they grow."""

    def __init__(self, writer: UsageWriter, key_id: str) -> None:
        self._writer = writer
        self._key_id = key_id
        self._written: UsageRecord | None = None  # None until the admission is written
        self._written_at = 0.0

    def update(self, usage: UsageRecord) -> None:
        """The request's totals so far; written at once the first time, then once a second."""
        if self._written is None or time.monotonic() - self._written_at >= PROGRESS_INTERVAL_S:
            self._write(usage, is_final=False)

    def finish(self, usage: UsageRecord) -> None:
        """The request's final totals."""
        self._write(usage, is_final=True)

    def _write(self, usage: UsageRecord, *, is_final: bool) -> None:
        written = self._written or UsageRecord(usage.model)
        delta = UsageDelta(
            requests=int(self._written is None),
            prompt_tokens=usage.prompt_tokens - written.prompt_tokens,
            completion_tokens=usage.completion_tokens - written.completion_tokens,
            errors=int(is_final and usage.is_error),
        )
        if delta != UsageDelta():
            self._writer.add(self._key_id, usage.model, delta)
        self._written = usage
        self._written_at = time.monotonic()

"""One SQLite connection (WAL, busy timeout, write transactions) shared by the job store's tables.

One connection per store, guarded by a lock; callers on an event loop call the store from a
worker thread. Writes take SQLite's write lock (`BEGIN IMMEDIATE`), so processes sharing the
file never interleave a read-modify-write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from llmserve.jobs.sqlite_schema import SCHEMA

BUSY_TIMEOUT_S = 30.0


def sql_words(words: Iterable[str]) -> str:
    """A parenthesized SQL list of fixed words (statuses): `('queued', 'in_progress')`."""
    return "(" + ", ".join(f"'{word}'" for word in words) + ")"


class SqliteConnection:
    """The connection and its two ways in: `_write` (a transaction) and `_read`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction holding SQLite's write lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

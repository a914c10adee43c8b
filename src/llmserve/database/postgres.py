"""A pool of connections to one PostgreSQL database, and what happens when it does not answer.

Every store method takes one connection for one transaction (committed when the block ends,
rolled back on any error: nothing is half-written). A database that does not answer becomes
`DatabaseUnavailableError`, a 503 `server_is_overloaded` the client may retry; the pool checks
each connection before handing it out and reconnects by itself once the database is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from llmserve.database.url import redacted
from llmserve.errors import OverloadedError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3  # a new connection that is not made by then counts as a failure
POOL_TIMEOUT_S = 4.0  # a request waits this long for a working connection, then gets a 503
READINESS_TTL_S = 1.0  # /health asks the database at most this often
Connection = psycopg.Connection[tuple[Any, ...]]


class DatabaseUnreachableError(ValueError):
    """`--database postgresql://…` names a database that does not answer (a start-up check)."""


class DatabaseUnavailableError(OverloadedError):
    """503: the database stopped answering while serving; the request may be retried."""


def unreachable(url: str, exc: BaseException) -> str:
    """What is wrong when the database at `url` did not answer."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot reach PostgreSQL at {redacted(url)} ({detail})"


def check_postgres(url: str) -> None:
    """Connect once, synchronously (before the server starts); raise DatabaseUnreachableError."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        raise DatabaseUnreachableError(
            f"{unreachable(url, exc)}: start PostgreSQL there, or fix --database "
            "(database: in the config, or LLMSERVE_DATABASE_URL)"
        ) from None


class Database:
    """A connection pool to the database at `url`, shared by the methods of one store."""

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            check=ConnectionPool.check_connection,  # NOTE: a connection cut by a restart is not
            # handed out; reads run alone (autocommit), writes in `transaction`
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True},  # replaced
            reconnect_timeout=24 * 3600.0,  # keep trying while the database is away
        )
        self._pool.open(wait=False)
        self._problem: str | None = None
        self._problem_checked_until = 0.0
        self._probe_lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One connection for one transaction: committed at the end, rolled back on an error."""
        with self.connection() as connection, connection.transaction():
            yield connection

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """One connection in autocommit mode: for a single statement (a read)."""
        try:
            with self._pool.connection(timeout=POOL_TIMEOUT_S) as connection:
                yield connection
        except (psycopg.OperationalError, PoolTimeout) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            logger.warning("database unavailable (%s): %s", redacted(self.url), detail)
            raise DatabaseUnavailableError(
                "The server cannot reach its database (PostgreSQL); please retry shortly."
            ) from None

    def problem(self) -> str | None:
        """None while the database answers; else what is wrong (asked at most once a second)."""
        with self._probe_lock:
            now = time.monotonic()
            if now >= self._problem_checked_until:
                self._problem = self._probe()
                self._problem_checked_until = time.monotonic() + READINESS_TTL_S
            return self._problem

    def _probe(self) -> str | None:
        try:
            with self._pool.connection(timeout=2.0) as connection:
                connection.execute("SELECT 1")
            return None
        except (psycopg.Error, PoolTimeout) as exc:
            return unreachable(self.url, exc)

    def close(self) -> None:
        self._pool.close()

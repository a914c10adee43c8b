"""The `--database` URL: SQLite in the home (none given), a named SQLite file, or PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

DATABASE_ENV = "LLMSERVE_DATABASE_URL"
SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
URL_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed `--database` value: which kind, and where."""

    kind: Literal["sqlite", "postgresql"]
    url: str  # as given (a PostgreSQL URL keeps its password: never log it, see `redacted`)
    sqlite_path: Path | None = None  # the file, for kind "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgresql"


def parse_database_url(value: str) -> DatabaseUrl:
    """`value` parsed; raises ValueError naming both accepted forms."""
    if value.startswith(SQLITE_PREFIX) and len(value) > len(SQLITE_PREFIX):
        # NOTE: as SQLAlchemy: sqlite:///relative.db, sqlite:////absolute/path.db
        path = Path(value[len(SQLITE_PREFIX) :]).expanduser()
        return DatabaseUrl("sqlite", value, sqlite_path=path)
    parts = urlsplit(value)
    if parts.scheme in POSTGRES_SCHEMES and parts.hostname and parts.path.strip("/"):
        return DatabaseUrl("postgresql", value)
    raise ValueError(f"database must be {URL_FORMS}; got {redacted(value)!r}")


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))

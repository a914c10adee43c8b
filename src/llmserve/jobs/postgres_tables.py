"""The base of `PostgresJobStore`: its pool, its schema, and file contents in the database.

A file's bytes live in `file_chunks` (1 MiB rows), so no process needs a shared disk. Callers
still read a `FileRecord.path`: the store writes the contents to this process's cache
(`home/files/<id>`) the first time the file is read here, and the server deletes that copy with
the file (`files.delete_contents`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmserve.database.migrations import open_migrated
from llmserve.database.postgres import Connection
from llmserve.jobs.files import CHUNK_BYTES, files_dir
from llmserve.jobs.store import FileRecord

Row = tuple[Any, ...]


class PostgresTables:
    """The pool every half of the store uses; `_tx` is one transaction, `_rows` one query."""

    def __init__(self, url: str, home: Path, *, max_connections: int = 8) -> None:
        self.url = url
        self.cache_dir = files_dir(home)
        self.database = open_migrated(url, max_size=max_connections)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.database.transaction() as connection:
            yield connection

    def _rows(self, query: str, params: tuple[object, ...] = ()) -> list[Row]:
        with self.database.connection() as connection:
            return connection.execute(query, params).fetchall()

    def close(self) -> None:
        self.database.close()

    def _cache_path(self, file_id: str) -> Path:
        return self.cache_dir / file_id

    def _store_contents(self, connection: Connection, record: FileRecord) -> None:
        """Copy the file at `record.path` into `file_chunks`, in the caller's transaction."""
        with open(record.path, "rb") as source, connection.cursor() as cursor:
            chunk_no = 0
            while chunk := source.read(CHUNK_BYTES):
                cursor.execute(
                    "INSERT INTO file_chunks (file_id, chunk_no, data) VALUES (%s, %s, %s)",
                    (record.id, chunk_no, chunk),
                )
                chunk_no += 1

    def _local_copy(self, file_id: str) -> Path:
        """This process's copy of a file's contents, fetched from the database when missing."""
        path = self._cache_path(file_id)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{file_id}.{os.getpid()}.part")
        with self._tx() as connection, partial.open("wb") as out:
            cursor = connection.execute(
                "SELECT data FROM file_chunks WHERE file_id = %s ORDER BY chunk_no", (file_id,)
            )
            for (data,) in cursor:
                out.write(data)
        partial.replace(path)  # NOTE: readers never see a half-written copy
        return path

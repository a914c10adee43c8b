"""File contents on disk under `home/files/`, and OpenAI's File object.

Uploads are copied in chunks (never whole in memory) and counted as they go, so a file over the
limit is refused without being kept. Batch output and error files are written here too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from llmserve.errors import InvalidRequestError
from llmserve.jobs.store import FileRecord, JsonObject, new_id

CHUNK_BYTES = 1 << 20
FILE_PURPOSES = ("batch", "batch_output", "assistants", "fine-tune", "vision", "user_data", "evals")


def files_dir(home: Path) -> Path:
    """Where file contents live."""
    return home / "files"


def file_too_large(max_bytes: int) -> InvalidRequestError:
    """The 400 for an upload over `jobs.max_file_mb`."""
    return InvalidRequestError(
        f"The file is larger than this server's limit of {max_bytes / 2**20:.3g} MB "
        "(jobs.max_file_mb). Split it into smaller files.",
        param="file",
        code="file_too_large",
    )


def check_purpose(purpose: str | None) -> str:
    """The upload's purpose; a missing or unknown one is a 400."""
    if purpose not in FILE_PURPOSES:
        raise InvalidRequestError(
            f"`purpose` must be one of {', '.join(FILE_PURPOSES)}; got {purpose!r}.",
            param="purpose",
        )
    return purpose


def save_upload(
    home: Path, owner: str, purpose: str, filename: str, source: BinaryIO, max_bytes: int
) -> FileRecord:
    """Copy `source` to a new file of `owner`; over `max_bytes` it is deleted and a 400 raised."""
    file_id = new_id("file-")
    path = files_dir(home) / file_id
    path.parent.mkdir(parents=True, exist_ok=True)
    num_bytes = 0
    try:
        with path.open("wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                num_bytes += len(chunk)
                if num_bytes > max_bytes:
                    raise file_too_large(max_bytes)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileRecord(file_id, owner, purpose, filename, num_bytes, int(time.time()), str(path))


def write_lines(home: Path, owner: str, filename: str, lines: Iterable[bytes]) -> FileRecord:
    """A new `batch_output` file made of `lines` (each ends with a newline), synced to disk."""
    file_id = new_id("file-")
    path = files_dir(home) / file_id
    path.parent.mkdir(parents=True, exist_ok=True)
    num_bytes = 0
    with path.open("wb") as out:
        for line in lines:
            out.write(line)
            num_bytes += len(line)
        out.flush()
        os.fsync(out.fileno())
    return FileRecord(
        file_id, owner, "batch_output", filename, num_bytes, int(time.time()), str(path)
    )


def file_object(record: FileRecord) -> JsonObject:
    """OpenAI's File object."""
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def delete_contents(record: FileRecord) -> None:
    """Remove a deleted file's contents from disk."""
    Path(record.path).unlink(missing_ok=True)

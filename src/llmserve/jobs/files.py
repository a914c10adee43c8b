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
from llmserve.ids import new_file_id
from llmserve.jobs.store import FileRecord
from llmserve.jobs.wire import FileObject

CHUNK_BYTES = 1 << 20
MAX_EXPIRY_S = 2_592_000  # 30 days: OpenAI's longest `expires_after`
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


def over_quota(quota_mb: float, used_bytes: int) -> InvalidRequestError:
    """The 400 for an upload that would take its key past its storage quota."""
    return InvalidRequestError(
        f"This upload would take the key past its storage quota of {quota_mb:g} MB "
        f"({used_bytes / 2**20:.3g} MB already stored; the key's max_storage_mb, default "
        "jobs.max_storage_mb_per_key). Delete files you no longer need, or ask for a larger quota.",
        param="file",
        code="storage_quota_exceeded",
    )


def expiry(anchor: str | None, seconds: str | None, min_s: float, now: int) -> int | None:
    """`expires_at` of an upload's `expires_after` (anchor `created_at`, seconds); None without."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            f"`expires_after[anchor]` must be 'created_at'; got {anchor!r}.",
            param="expires_after.anchor",
        )
    if seconds is None or not seconds.isdecimal() or not min_s <= int(seconds) <= MAX_EXPIRY_S:
        raise InvalidRequestError(
            f"`expires_after[seconds]` must be an integer from {min_s:g} to {MAX_EXPIRY_S} "
            f"(30 days); got {seconds!r}.",
            param="expires_after.seconds",
        )
    return now + int(seconds)


def check_purpose(purpose: str | None) -> str:
    """The upload's purpose; a missing or unknown one is a 400."""
    if purpose not in FILE_PURPOSES:
        raise InvalidRequestError(
            f"`purpose` must be one of {', '.join(FILE_PURPOSES)}; got {purpose!r}.",
            param="purpose",
        )
    return purpose


def save_upload(
    home: Path,
    owner: str,
    purpose: str,
    filename: str,
    source: BinaryIO,
    max_bytes: int,
    too_large: InvalidRequestError | None = None,
) -> FileRecord:
    """Copy `source` to a new file of `owner`; over `max_bytes` it is deleted and a 400 raised
    (`too_large`, else the file-size one)."""
    file_id = new_file_id()
    path = files_dir(home) / file_id
    path.parent.mkdir(parents=True, exist_ok=True)
    num_bytes = 0
    try:
        with path.open("wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                num_bytes += len(chunk)
                if num_bytes > max_bytes:
                    raise too_large or file_too_large(max_bytes)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileRecord(file_id, owner, purpose, filename, num_bytes, int(time.time()), str(path))


def write_lines(home: Path, owner: str, filename: str, lines: Iterable[bytes]) -> FileRecord:
    """A new `batch_output` file made of `lines` (each ends with a newline), synced to disk."""
    file_id = new_file_id()
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


def file_object(record: FileRecord) -> FileObject:
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
        "expires_at": record.expires_at,
    }


def delete_contents(record: FileRecord) -> None:
    """Remove a deleted file's contents from disk."""
    Path(record.path).unlink(missing_ok=True)

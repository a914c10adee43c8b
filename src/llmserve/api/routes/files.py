"""The Files API: POST /v1/files (multipart, streamed to disk), list, retrieve, content, delete.

The upload limit is `jobs.max_file_mb` (a 400 that says it), checked while the body streams in;
the body-size middleware leaves this route alone (see `api/http/body_limit.py`).
"""

from __future__ import annotations

import dataclasses
import time

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.types import Message

from llmserve.api.access.jobs_access import (
    JsonBody,
    job_owner,
    jobs_of,
    list_body,
    page_limit,
    refuse_while_draining,
    storage_quota_mb,
)
from llmserve.api.http.body_limit import announced_length
from llmserve.errors import InvalidRequestError, NotFoundError
from llmserve.jobs.files import (
    check_purpose,
    delete_contents,
    expiry,
    file_object,
    file_too_large,
    over_quota,
)
from llmserve.jobs.files import save_upload as save_file
from llmserve.jobs.store import FileRecord

router = APIRouter()
FILES_PATH = "/v1/files"
MAX_FILES_PAGE = 10_000  # OpenAI's default and largest page of files
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, headers and the purpose field around the file


def not_found(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id}", param="file_id")


@router.post(FILES_PATH)
async def create_file(request: Request) -> JSONResponse:
    """Upload a file (`file` and `purpose` form fields); contents go to disk, never to memory."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    await refuse_while_draining(request)
    max_bytes, too_large = await upload_limit(request, owner)
    if announced_length(request.scope) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large
    form = await bounded(request, max_bytes + MULTIPART_OVERHEAD, too_large).form(max_files=1)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError(
                "Send the file as the multipart form field `file`.", param="file"
            )
        purpose = check_purpose(_text(form.get("purpose")))
        expires_at = expiry(
            _text(form.get("expires_after[anchor]")), _text(form.get("expires_after[seconds]")),
            jobs.config.min_file_expiry_s, int(time.time()),
        )  # fmt: skip
        record = await jobs.call(
            save_file, jobs.home, owner or "", purpose, upload.filename or "upload",
            upload.file, max_bytes, too_large,
        )  # fmt: skip
    finally:
        await form.close()
    record = dataclasses.replace(record, expires_at=expires_at)
    await jobs.call(jobs.store.add_file, record)
    return JSONResponse(file_object(record))


async def upload_limit(request: Request, owner: str | None) -> tuple[int, InvalidRequestError]:
    """The most bytes this upload may have, and the 400 past them: the file-size limit, or what
    is left of the key's storage quota when that is less."""
    jobs = jobs_of(request)
    max_bytes = jobs.config.max_file_bytes
    quota_mb = await storage_quota_mb(request, owner)
    if quota_mb is None or owner is None:
        return max_bytes, file_too_large(max_bytes)
    used = await jobs.call(jobs.store.storage_used, owner)
    left = max(0, int(quota_mb * 2**20) - used)
    if left >= max_bytes:
        return max_bytes, file_too_large(max_bytes)
    return left, over_quota(quota_mb, used)


def bounded(request: Request, max_bytes: int, too_large: InvalidRequestError) -> Request:
    """`request` whose body raises `too_large` once it grows past `max_bytes`."""
    num_bytes = 0

    async def receive() -> Message:
        nonlocal num_bytes
        message = await request.receive()
        num_bytes += len(message.get("body", b""))
        if num_bytes > max_bytes:
            raise too_large
        return message

    return Request(request.scope, receive)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@router.get(FILES_PATH)
async def list_files(request: Request) -> JsonBody:
    """The caller's files, newest first, a page at a time (`after`, `limit`, `purpose`)."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    page = await jobs.call(
        jobs.store.list_files,
        owner,
        after=request.query_params.get("after"),
        limit=page_limit(request, default=MAX_FILES_PAGE, maximum=MAX_FILES_PAGE),
        purpose=request.query_params.get("purpose"),
    )
    return list_body(page, file_object)


async def owned_file(request: Request, file_id: str) -> FileRecord:
    """The file, if the caller may see it; 404 otherwise."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    record = await jobs.call(jobs.store.get_file, owner, file_id)
    if record is None:
        raise not_found(file_id)
    return record


@router.get(FILES_PATH + "/{file_id}")
async def retrieve_file(file_id: str, request: Request) -> JsonBody:
    """One File object."""
    return file_object(await owned_file(request, file_id))


@router.get(FILES_PATH + "/{file_id}/content")
async def file_content(file_id: str, request: Request) -> FileResponse:
    """The file's bytes, streamed from disk."""
    record = await owned_file(request, file_id)
    return FileResponse(record.path, media_type="application/octet-stream")


@router.delete(FILES_PATH + "/{file_id}")
async def delete_file(file_id: str, request: Request) -> JsonBody:
    """Delete the file and its contents."""
    owner = await job_owner(request)
    jobs = jobs_of(request)
    record = await jobs.call(jobs.store.delete_file, owner, file_id)
    if record is None:
        raise not_found(file_id)
    await jobs.call(delete_contents, record)
    return {"id": file_id, "object": "file", "deleted": True}

"""The `JobStore` protocol: files, batches, batch result lines and stored responses.

Owners are API key ids. A read with `owner=None` is the admin's: it sees every owner's jobs.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

JsonObject = dict[str, Any]
ACTIVE_BATCH_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")


def new_id(prefix: str) -> str:
    """A server-made public id: `file-…`, `batch_…`, `resp_…`."""
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass(frozen=True)
class FileRecord:
    """An uploaded (or batch-made) file: metadata here, contents at `path`."""

    id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    created_at: int
    path: str
    expires_at: int | None = None  # `expires_after`: gone (404, then deleted) from then on


@dataclass
class BatchRecord:
    """A batch as stored: `doc` holds OpenAI's Batch fields that only the runner changes."""

    id: str
    owner: str
    status: str
    estimated_tokens: int
    doc: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class LineResult:
    """One finished batch line: its output (or error) file line and the tokens it used."""

    line_no: int
    custom_id: str
    is_error: bool
    line: JsonObject
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ResponseRecord:
    """A stored response: its object, the request that made it, and whether it runs detached."""

    id: str
    owner: str
    status: str
    response: JsonObject
    request: JsonObject
    is_background: bool = False


@dataclass(frozen=True)
class Page:
    """One page of a cursor-paginated list."""

    items: list[Any]
    has_more: bool


@dataclass(frozen=True)
class JobCounts:
    """Every batch by status, and every batch line done, by outcome (for /metrics)."""

    batches_by_status: dict[str, int]
    lines_by_outcome: dict[str, int]  # "completed" (an output line) or "failed" (an error line)


class JobStore(Protocol):
    """Durable state of async jobs, shared by every server process using the same home.

    Contract: every write is committed before the method returns; `record_line` stores a line
    at most once per (batch, line number) and counts it in the batch's `request_counts` and
    `usage` in the same transaction; leases (`claim_*`) go to one holder at a time and expire
    `lease_s` after their last renewal.
    """

    def add_file(self, record: FileRecord) -> None: ...

    def get_file(self, owner: str | None, file_id: str) -> FileRecord | None: ...

    def list_files(
        self, owner: str | None, *, after: str | None, limit: int, purpose: str | None
    ) -> Page: ...

    def delete_file(self, owner: str | None, file_id: str) -> FileRecord | None: ...

    def add_batch(self, record: BatchRecord) -> None: ...

    def get_batch(self, owner: str | None, batch_id: str) -> BatchRecord | None: ...

    def list_batches(self, owner: str | None, *, after: str | None, limit: int) -> Page: ...

    def update_batch(self, batch_id: str, status: str, fields: JsonObject) -> BatchRecord: ...

    def enqueued_tokens(self, owner: str) -> int: ...

    def claim_batch(self, holder: str, lease_s: float) -> BatchRecord | None: ...

    def renew_batch(self, batch_id: str, holder: str, lease_s: float) -> bool: ...

    def release_batch(self, batch_id: str, holder: str) -> None: ...

    def record_line(self, batch_id: str, result: LineResult) -> bool: ...

    def done_line_numbers(self, batch_id: str) -> set[int]: ...

    def result_lines(self, batch_id: str) -> list[LineResult]: ...

    def put_response(self, record: ResponseRecord) -> None: ...

    def get_response(self, owner: str | None, response_id: str) -> ResponseRecord | None: ...

    def delete_response(self, owner: str | None, response_id: str) -> bool: ...

    def claim_response(self, holder: str, lease_s: float) -> ResponseRecord | None: ...

    def renew_response(self, response_id: str, holder: str, lease_s: float) -> bool: ...

    def add_event(self, response_id: str, sequence_number: int, event: JsonObject) -> None: ...

    def add_events(self, response_id: str, events: list[JsonObject]) -> None: ...

    def events_after(self, response_id: str, sequence_number: int) -> list[JsonObject]: ...

    def job_counts(self) -> JobCounts: ...

    def start_attempt(self, job_id: str, part: int) -> int: ...

    # conversations: every call names the owner; another key's reads as unknown
    def create_conversation(
        self,
        owner: str,
        conversation_id: str,
        metadata: dict[str, str],
        items: Sequence[JsonObject],
    ) -> JsonObject: ...

    def get_conversation(self, owner: str, conversation_id: str) -> JsonObject | None: ...

    def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> JsonObject | None: ...

    def delete_conversation(self, owner: str, conversation_id: str) -> bool: ...

    def conversation_items(self, owner: str, conversation_id: str) -> list[JsonObject] | None: ...

    def add_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[JsonObject]
    ) -> bool: ...

    def delete_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> bool: ...

    def storage_used(self, owner: str) -> int: ...

    def pop_expired_files(self, now: float) -> list[FileRecord]: ...

    def delete_responses_before(self, created_before: float) -> int: ...

    def cancel_jobs_of(self, owner: str, now: int) -> tuple[int, int]: ...

    def close(self) -> None: ...

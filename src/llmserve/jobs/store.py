"""The `JobStore` protocol: files, batches, batch result lines and stored responses.

Owners are API key ids. A read with `owner=None` is the admin's: it sees every owner's jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from llmserve.jobs.wire import (
    BatchObject,
    BatchUpdate,
    ConversationObject,
    ResultLine,
    StoredRequest,
)
from llmserve.serving.response_items import Item
from llmserve.serving.response_objects import ResponseEvent, ResponseObject
from llmserve.statuses import BatchStatus, LineOutcome, ResponseStatus

T = TypeVar("T")


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
    """A batch as stored: `doc` is OpenAI's Batch object (its status kept equal to `status`)."""

    id: str
    owner: str
    status: BatchStatus
    estimated_tokens: int
    doc: BatchObject


@dataclass(frozen=True)
class LineResult:
    """One finished batch line: its output (or error) file line and the tokens it used."""

    line_no: int
    custom_id: str
    is_error: bool
    line: ResultLine
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ResponseRecord:
    """A stored response: its object, the request that made it, and whether it runs detached."""

    id: str
    owner: str
    status: ResponseStatus
    response: ResponseObject
    request: StoredRequest
    is_background: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a cursor-paginated list."""

    items: list[T]
    has_more: bool


@dataclass(frozen=True)
class JobCounts:
    """Every batch by status, and every batch line done, by outcome (for /metrics)."""

    batches_by_status: Mapping[BatchStatus, int]
    lines_by_outcome: Mapping[LineOutcome, int]  # an output line or an error line


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
    ) -> Page[FileRecord]: ...

    def delete_file(self, owner: str | None, file_id: str) -> FileRecord | None: ...

    def add_batch(self, record: BatchRecord) -> None: ...

    def get_batch(self, owner: str | None, batch_id: str) -> BatchRecord | None: ...

    def list_batches(
        self, owner: str | None, *, after: str | None, limit: int
    ) -> Page[BatchRecord]: ...

    def update_batch(self, batch_id: str, status: BatchStatus, fields: BatchUpdate) -> BatchRecord:
        """Set the status and merge `fields` into the Batch object; `StatusTransitionError`
        when the batch's current status cannot change to `status` (`jobs/transitions.py`)."""
        ...

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

    def add_event(self, response_id: str, sequence_number: int, event: ResponseEvent) -> None: ...

    def add_events(self, response_id: str, events: list[ResponseEvent]) -> None: ...

    def events_after(self, response_id: str, sequence_number: int) -> list[ResponseEvent]: ...

    def job_counts(self) -> JobCounts: ...

    def start_attempt(self, job_id: str, part: int) -> int: ...

    # conversations: every call names the owner; another key's reads as unknown
    def create_conversation(
        self,
        owner: str,
        conversation_id: str,
        metadata: dict[str, str],
        items: Sequence[Item],
    ) -> ConversationObject: ...

    def get_conversation(self, owner: str, conversation_id: str) -> ConversationObject | None: ...

    def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> ConversationObject | None: ...

    def delete_conversation(self, owner: str, conversation_id: str) -> bool: ...

    def conversation_items(self, owner: str, conversation_id: str) -> list[Item] | None: ...

    def add_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[Item]
    ) -> bool: ...

    def delete_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> bool: ...

    def storage_used(self, owner: str) -> int: ...

    def pop_expired_files(self, now: float) -> list[FileRecord]: ...

    def delete_responses_before(self, created_before: float) -> int: ...

    def cancel_jobs_of(self, owner: str, now: int) -> tuple[int, int]: ...

    def close(self) -> None: ...

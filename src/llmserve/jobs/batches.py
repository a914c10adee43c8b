"""Creating and cancelling batches (HTTP-free): checks, validation, the enqueued-token limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmserve.errors import InvalidRequestError, NotFoundError, RateLimitError
from llmserve.ids import new_batch_id
from llmserve.jobs.objects import BATCH_ENDPOINTS, COMPLETION_WINDOW_S, new_batch_doc
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import BatchRecord
from llmserve.jobs.transitions import StatusTransitionError, can_cancel_batch
from llmserve.jobs.validation import validate_file
from llmserve.statuses import BatchStatus

RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class BatchSpec:
    """What `POST /v1/batches` asks for."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


def check_spec(spec: BatchSpec) -> None:
    """400 for an endpoint or completion window this server does not run."""
    if spec.endpoint not in BATCH_ENDPOINTS:
        raise InvalidRequestError(
            f"`endpoint` must be one of {', '.join(BATCH_ENDPOINTS)}; got {spec.endpoint!r}.",
            param="endpoint",
        )
    if spec.completion_window not in COMPLETION_WINDOW_S:
        raise InvalidRequestError(
            f"`completion_window` must be '24h'; got {spec.completion_window!r}.",
            param="completion_window",
        )


def create_batch(
    jobs: Jobs,
    owner: str,
    spec: BatchSpec,
    has_model: Callable[[str], bool],
    max_line_bytes: int | None = None,
) -> BatchRecord:
    """A new `validating` batch (its problems, if any, in `errors`); 429 over the token limit.

    Blocking: streams over the input file once; call it from a worker thread.
    """
    check_spec(spec)
    input_file = jobs.store.get_file(owner, spec.input_file_id)
    if input_file is None:
        raise NotFoundError(f"No such File object: {spec.input_file_id}", param="input_file_id")
    config = jobs.config
    checked = validate_file(
        Path(input_file.path), spec.endpoint, config.max_lines, config.default_line_max_tokens,
        has_model, max_line_bytes,
    )  # fmt: skip
    check_enqueued_tokens(jobs, owner, checked.estimated_tokens)
    batch_id = new_batch_id()
    doc = new_batch_doc(
        batch_id, spec.endpoint, spec.input_file_id, spec.completion_window, spec.metadata,
        checked.model, 0 if checked.errors else checked.num_lines,
    )  # fmt: skip
    if checked.errors:
        doc["errors"] = {"object": "list", "data": checked.errors}
    record = BatchRecord(batch_id, owner, "validating", checked.estimated_tokens, doc)
    jobs.store.add_batch(record)
    return record


def check_enqueued_tokens(jobs: Jobs, owner: str, num_tokens: int) -> None:
    """429 when the key's unfinished batches and this one exceed its enqueued-token limit."""
    limit = jobs.config.max_enqueued_tokens_per_key
    if limit is None:
        return
    enqueued = jobs.store.enqueued_tokens(owner)
    if enqueued + num_tokens > limit:
        raise RateLimitError(
            f"Enqueued token limit reached: this key has {enqueued} tokens in unfinished batches "
            f"and this batch adds about {num_tokens}; the limit is {limit} "
            "(jobs.max_enqueued_tokens_per_key). Wait for a batch to finish.",
            retry_after_s=RETRY_AFTER_S,
        )


def cancel_batch(jobs: Jobs, owner: str | None, batch_id: str) -> BatchRecord:
    """Ask the runner to stop: `cancelling` now, `cancelled` once the partial files are written."""
    record = jobs.store.get_batch(owner, batch_id)
    if record is None:
        raise NotFoundError(f"No batch found with id '{batch_id}'.", param="batch_id")
    if not can_cancel_batch(record.status):
        raise _cannot_cancel(record.status)
    try:
        return jobs.store.update_batch(batch_id, "cancelling", {"cancelling_at": int(time.time())})
    except StatusTransitionError:  # it moved on since it was read (a runner finished it)
        current = jobs.store.get_batch(owner, batch_id)
        raise _cannot_cancel(record.status if current is None else current.status) from None


def _cannot_cancel(status: BatchStatus) -> InvalidRequestError:
    return InvalidRequestError(f"Cannot cancel a batch with status '{status}'.", param="batch_id")

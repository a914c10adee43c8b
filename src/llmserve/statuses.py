"""The statuses of OpenAI's job objects (Batch, File, Response), each spelt once.

Which status may follow which is decided in `jobs/transitions.py`; these are only the words.
"""

from __future__ import annotations

from typing import Final, Literal, TypeGuard, get_args

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
    "cancelled",
]  # fmt: skip
FileStatus = Literal["uploaded", "processed", "error"]
ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
LineOutcome = Literal["completed", "failed"]  # a batch line: an output line or an error line

BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = get_args(BatchStatus)
ACTIVE_BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = (
    "validating", "in_progress", "finalizing", "cancelling",
)  # fmt: skip
ENDED_BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = (
    "completed", "failed", "expired", "cancelled",
)  # fmt: skip
LINE_OUTCOMES: Final[tuple[LineOutcome, ...]] = get_args(LineOutcome)
RESPONSE_STATUSES: Final[tuple[ResponseStatus, ...]] = get_args(ResponseStatus)
ACTIVE_RESPONSE_STATUSES: Final[tuple[ResponseStatus, ...]] = ("queued", "in_progress")
ENDED_RESPONSE_STATUSES: Final[tuple[ResponseStatus, ...]] = (
    "completed", "incomplete", "failed", "cancelled",
)  # fmt: skip


def is_batch_status(value: object) -> TypeGuard[BatchStatus]:
    return value in BATCH_STATUSES


def is_response_status(value: object) -> TypeGuard[ResponseStatus]:
    return value in RESPONSE_STATUSES


def batch_status(value: str) -> BatchStatus:
    """`value` as a batch status (as read back from a store); ValueError for any other word."""
    if not is_batch_status(value):
        raise ValueError(f"{value!r} is not a batch status")
    return value


def response_status(value: str) -> ResponseStatus:
    """`value` as a response status (as read back from a store); ValueError for any other word."""
    if not is_response_status(value):
        raise ValueError(f"{value!r} is not a response status")
    return value

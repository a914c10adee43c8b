"""Which status may follow which, for batches and background responses (the one place).

The store refuses any other batch status change (`check_batch_transition`); the runner,
finalizing and cancelling ask here what a job in a given status may do next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from llmserve.statuses import BatchStatus, ResponseStatus

BATCH_TRANSITIONS: Final[Mapping[BatchStatus, frozenset[BatchStatus]]] = {
    "validating": frozenset({"in_progress", "failed", "cancelling"}),
    "in_progress": frozenset({"finalizing", "expired", "cancelling", "failed"}),
    "finalizing": frozenset({"completed", "expired", "failed"}),
    "cancelling": frozenset({"cancelled", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
}
RESPONSE_TRANSITIONS: Final[Mapping[ResponseStatus, frozenset[ResponseStatus]]] = {
    "queued": frozenset({"in_progress", "failed", "cancelled"}),
    "in_progress": frozenset({"completed", "incomplete", "failed", "cancelled"}),
    "completed": frozenset(),
    "incomplete": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
CANCELLABLE_BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = tuple(
    status for status, after in BATCH_TRANSITIONS.items() if "cancelling" in after
)
CANCELLABLE_RESPONSE_STATUSES: Final[tuple[ResponseStatus, ...]] = tuple(
    status for status, after in RESPONSE_TRANSITIONS.items() if "cancelled" in after
)
RUNNING_BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = ("in_progress", "finalizing")


class StatusTransitionError(ValueError):
    """A job was asked to change to a status that cannot follow its current one."""


def can_batch_become(old: BatchStatus, new: BatchStatus) -> bool:
    """True when a batch in `old` may change to `new` (staying in `old` is no change)."""
    return new == old or new in BATCH_TRANSITIONS[old]


def check_batch_transition(batch_id: str, old: BatchStatus, new: BatchStatus) -> None:
    """Raise `StatusTransitionError` unless a batch in `old` may become `new`."""
    if not can_batch_become(old, new):
        raise StatusTransitionError(f"batch {batch_id} cannot go from '{old}' to '{new}'")


def can_cancel_batch(status: BatchStatus) -> bool:
    return status in CANCELLABLE_BATCH_STATUSES


def can_cancel_response(status: ResponseStatus) -> bool:
    return status in CANCELLABLE_RESPONSE_STATUSES

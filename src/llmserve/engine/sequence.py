"""One sequence (one choice of a request) as the engine tracks it."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmserve.sampling import SamplingParams
from llmserve.structured.grammar import GrammarMatcher
from llmserve.types import FinishReason

if TYPE_CHECKING:
    from llmserve.engine.drafting import PredictionDrafter


class SequenceStatus(enum.Enum):
    """Where a sequence is in its life."""

    WAITING = enum.auto()
    RUNNING = enum.auto()
    FINISHED = enum.auto()


@dataclass(eq=False)
class Sequence:
    """Token ids (prompt then outputs), KV blocks and progress of one choice."""

    request_id: str
    index: int
    token_ids: list[int]
    num_prompt_tokens: int
    sampling: SamplingParams
    tenant: str = ""
    priority: int = 0
    num_computed_tokens: int = 0  # tokens whose KV is in the cache
    block_ids: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)  # of its full blocks, from the start
    num_registered_blocks: int = 0  # leading blocks already offered to the prefix cache
    num_cached_prompt_tokens: int | None = None  # found in the prefix cache at first admission
    cache_root: bytes = b""  # the hash its block chain starts from: its cache namespace's
    num_written_prompt_blocks: int = 0  # full prompt blocks it newly offered to the prefix cache
    num_seen_prompt_blocks: int = 0  # prompt blocks already counted (cached or written)
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: FinishReason | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    queue_time_s: float | None = None  # set when it first runs: the wait in the waiting queue
    matcher: GrammarMatcher | None = None  # the request's grammar state; None when unconstrained
    drafter: PredictionDrafter | None = None  # drafts from the request's `prediction`
    draft_token_ids: list[int] = field(default_factory=list)  # guesses for this step to verify
    num_accepted_prediction_tokens: int = 0
    num_rejected_prediction_tokens: int = 0
    ngram_backoff: int = 0  # steps without n-gram drafts after the last failure (doubling)
    num_ngram_waits: int = 0  # steps still to go without n-gram drafts

    def start_running(self) -> None:
        """Move to RUNNING; the first time, record how long it waited."""
        self.status = SequenceStatus.RUNNING
        if self.queue_time_s is None:
            self.queue_time_s = time.monotonic() - self.arrival_time

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

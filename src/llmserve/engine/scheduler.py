"""Decides which sequences run each step and how many tokens each computes.

Policy: running sequences first (oldest first; each decodes one token or continues its prefill
chunk), then waiting ones from the fair queue while the token budget, `max_num_seqs` and free KV
blocks allow; background and batch work take at most `max_batch_seqs` of the seats; a waiting
sequence whose prefix is in the prefix cache starts after that prefix. When a running sequence
needs a block and none is free, the newest running sequence is preempted: its blocks are freed
and it waits, first in line, to be recomputed (or to find its blocks still cached).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmserve.config import EngineConfig
from llmserve.engine.block_manager import BlockManager
from llmserve.engine.fair_queue import FairQueue
from llmserve.engine.sequence import Sequence, SequenceStatus
from llmserve.types import Priority


@dataclass(frozen=True)
class ScheduledChunk:
    """`num_tokens` tokens of `seq`, from position `start`, computed this step."""

    seq: Sequence
    start: int
    num_tokens: int
    # Guesses at the tokens after the sequence's last one: their KV is computed after its own,
    # and the step verifies them (only on a sequence's last chunk)
    draft_token_ids: tuple[int, ...] = ()

    @property
    def is_last(self) -> bool:
        """True when this chunk reaches the sequence's end: the step samples a token for it."""
        return self.start + self.num_tokens == self.seq.num_tokens

    @property
    def num_query_tokens(self) -> int:
        """Tokens this chunk puts through the model: its own, then its drafts."""
        return self.num_tokens + len(self.draft_token_ids)

    @property
    def num_sampled(self) -> int:
        """Rows of logits the step keeps for it: its last token's and one per draft (or none)."""
        return 1 + len(self.draft_token_ids) if self.is_last else 0


@dataclass(frozen=True)
class SchedulerOutput:
    """The only contract between scheduler and model runner: one-token chunks come first."""

    chunks: list[ScheduledChunk]
    preempted: list[Sequence] = field(default_factory=list)
    finished: list[Sequence] = field(default_factory=list)  # could never fit the KV cache

    @property
    def num_tokens(self) -> int:
        return sum(c.num_query_tokens for c in self.chunks)

    @property
    def is_empty(self) -> bool:
        return not self.chunks


class Scheduler:
    """Owns the waiting queue, the running list and the block manager."""

    def __init__(self, config: EngineConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.block_manager = block_manager
        self.waiting: FairQueue[Sequence] = FairQueue()
        self.running: list[Sequence] = []
        self.num_preemptions = 0  # since start: a sign the KV cache is too small for the load

    def add(self, seq: Sequence) -> None:
        self.waiting.push(seq, tenant=seq.tenant, priority=seq.priority)

    def has_work(self) -> bool:
        return bool(self.waiting) or bool(self.running)

    def remove(self, seq: Sequence) -> None:
        """Drop `seq` from wherever it is and free its blocks at once."""
        if seq in self.running:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self.block_manager.free(seq)

    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        chunks: list[ScheduledChunk] = []
        preempted: list[Sequence] = self._yield_batch_seat()
        finished: list[Sequence] = []
        is_out_of_blocks = False
        for seq in list(self.running):
            if budget == 0:
                break
            if seq not in self.running:  # preempted earlier in this loop
                continue
            num_new = min(seq.num_tokens - seq.num_computed_tokens, budget)
            num_preempted = len(preempted)
            is_room = self._make_room(seq, num_new, preempted, finished)
            is_out_of_blocks = is_out_of_blocks or len(preempted) > num_preempted
            if not is_room:
                continue
            drafts = self._fitting_drafts(seq, num_new, budget)
            self.block_manager.allocate(seq, num_new, num_lookahead=len(drafts))
            chunks.append(ScheduledChunk(seq, seq.num_computed_tokens, num_new, drafts))
            budget -= num_new + len(drafts)
        while self.waiting and budget > 0 and not is_out_of_blocks:
            if len(self.running) >= self.config.max_num_seqs:
                break
            candidate = self.waiting.peek()
            if candidate is None or self._is_batch_share_full(candidate):
                break
            cached = self.block_manager.cached_prefix(candidate)
            num_cached = len(cached) * self.block_manager.block_size
            num_new = min(candidate.num_tokens - num_cached, budget)
            if not self.block_manager.can_allocate(candidate, num_new, cached):
                break
            self.waiting.pop()
            self.block_manager.allocate(candidate, num_new, cached)
            if candidate.num_cached_prompt_tokens is None:
                candidate.num_cached_prompt_tokens = num_cached
            candidate.start_running()
            self.running.append(candidate)
            chunks.append(ScheduledChunk(candidate, candidate.num_computed_tokens, num_new))
            budget -= num_new
        chunks.sort(key=lambda c: c.num_query_tokens != 1)
        return SchedulerOutput(chunks, preempted, finished)

    def _fitting_drafts(self, seq: Sequence, num_new: int, budget: int) -> tuple[int, ...]:
        """The drafts `seq` verifies this step: what the budget and free blocks allow.

        NOTE: drafts never preempt anyone: without free blocks for them, the step goes without.
        """
        if num_new != 1 or not seq.draft_token_ids:
            return ()
        drafts = seq.draft_token_ids[: budget - num_new]
        if not self.block_manager.can_allocate(seq, num_new + len(drafts)):
            return ()
        return tuple(drafts)

    def _yield_batch_seat(self) -> list[Sequence]:
        """Preempt the newest lower-priority sequence when higher work waits and no seat is free.

        Background and batch work fill idle seats and give one back per step as the work ahead
        of them in priority rises.
        """
        head = self.waiting.peek()
        if head is None or len(self.running) < self.config.max_num_seqs:
            return []
        lower = [seq for seq in self.running if seq.priority > head.priority]
        if not lower:
            return []
        self._preempt(lower[-1], is_for_memory=False)
        return [lower[-1]]

    def _is_batch_share_full(self, candidate: Sequence) -> bool:
        """True when `candidate` is background or batch work and such work has its share of seats.

        NOTE: interactive requests come first in the queue, so a background or batch candidate at
        its head means no interactive request waits; that work still never takes more than
        `max_batch_seqs` seats together, which leaves seats free for interactive requests that
        arrive next (a key's background responses cannot fill the engine).
        """
        if candidate.priority == Priority.INTERACTIVE:
            return False
        num_deferred = sum(1 for seq in self.running if seq.priority != Priority.INTERACTIVE)
        return num_deferred >= self.config.max_batch_seqs

    def _make_room(
        self, seq: Sequence, num_new: int, preempted: list[Sequence], finished: list[Sequence]
    ) -> bool:
        """Preempt newest sequences until `seq` fits; False if `seq` itself had to go."""
        while not self.block_manager.can_allocate(seq, num_new):
            victim = self.running[-1]
            if victim is seq and len(self.running) == 1:
                # NOTE: alone and still too big for the whole cache: it can never finish.
                self.running.remove(seq)
                self.block_manager.free(seq)
                seq.status = SequenceStatus.FINISHED
                seq.finish_reason = "length"
                finished.append(seq)
                return False
            self._preempt(victim)
            preempted.append(victim)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence, *, is_for_memory: bool = True) -> None:
        self.num_preemptions += int(is_for_memory)  # the sign of a KV cache too small
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        self.waiting.push_front(seq, tenant=seq.tenant, priority=seq.priority)

    def finish(self, seq: Sequence) -> None:
        """Mark `seq` finished and free its blocks immediately."""
        self.remove(seq)
        seq.status = SequenceStatus.FINISHED

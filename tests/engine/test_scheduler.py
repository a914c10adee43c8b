from __future__ import annotations

from llmserve.config import EngineConfig
from llmserve.engine.block_manager import BlockManager
from llmserve.engine.scheduler import Scheduler
from llmserve.engine.sequence import Sequence, SequenceStatus
from llmserve.sampling import SamplingParams
from llmserve.types import Priority

PARAMS = SamplingParams(max_tokens=8)


def seq(name: str, num_prompt: int, tenant: str = "") -> Sequence:
    return Sequence(name, 0, list(range(num_prompt)), num_prompt, PARAMS, tenant=tenant)


def scheduler(num_blocks: int = 100, **config: int) -> Scheduler:
    engine_config = EngineConfig(**{"block_size": 4, **config})
    return Scheduler(engine_config, BlockManager(num_blocks, 4))


def advance(s: Scheduler) -> list[tuple[str, int, int]]:
    """Schedule one step and pretend it ran: computed tokens grow, finished prompts sample one."""
    out = s.schedule()
    for chunk in out.chunks:
        chunk.seq.num_computed_tokens += chunk.num_tokens
        if chunk.is_last:
            chunk.seq.token_ids.append(1)
    return [(c.seq.request_id, c.start, c.num_tokens) for c in out.chunks]


def test_long_prompt_is_chunked_and_shares_steps_with_decodes() -> None:
    s = scheduler(max_num_batched_tokens=10)
    s.add(seq("short", 3))
    assert advance(s) == [("short", 0, 3)]
    s.add(seq("long", 20))
    assert advance(s) == [("short", 3, 1), ("long", 0, 9)]
    assert advance(s) == [("short", 4, 1), ("long", 9, 9)]
    assert advance(s) == [("short", 5, 1), ("long", 18, 2)]
    assert advance(s) == [("short", 6, 1), ("long", 20, 1)]


def test_max_num_seqs_keeps_the_rest_waiting() -> None:
    s = scheduler(max_num_seqs=2)
    for i in range(3):
        s.add(seq(f"r{i}", 4))
    assert [name for name, _, _ in advance(s)] == ["r0", "r1"]
    assert len(s.waiting) == 1


def test_waiting_requests_are_admitted_round_robin_by_tenant() -> None:
    s = scheduler(max_num_seqs=3)
    for i in range(3):
        s.add(seq(f"a{i}", 4, tenant="a"))
    s.add(seq("b0", 4, tenant="b"))
    assert [name for name, _, _ in advance(s)] == ["a0", "b0", "a1"]


def test_newest_sequence_is_preempted_when_blocks_run_out() -> None:
    s = scheduler(num_blocks=4)
    old, new = seq("old", 8), seq("new", 7)
    s.add(old)
    s.add(new)
    advance(s)  # old: 2 blocks for 8 tokens + 1 sampled; new: 2 blocks for 7 + 1
    steps = advance(s)  # old needs a third block: new gives its blocks back
    assert steps == [("old", 8, 1)]
    assert new.status is SequenceStatus.WAITING
    assert (new.num_computed_tokens, new.block_ids) == (0, [])
    assert s.num_preemptions == 1
    assert s.waiting.peek() is new


def test_sequence_that_can_never_fit_finishes_with_length() -> None:
    s = scheduler(num_blocks=2)
    alone = seq("big", 8)
    s.add(alone)
    advance(s)
    out = s.schedule()
    assert out.finished == [alone]
    assert alone.finish_reason == "length"
    assert s.block_manager.num_free_blocks == 2


def batch_seq(name: str) -> Sequence:
    return Sequence(name, 0, [1, 2, 3], 3, PARAMS, priority=int(Priority.BATCH))


def test_batch_work_takes_at_most_its_share_and_interactive_goes_first() -> None:
    s = scheduler(max_num_seqs=4, batch_share=0.5)  # type: ignore[arg-type]
    for i in range(4):
        s.add(batch_seq(f"b{i}"))
    assert [name for name, _, _ in advance(s)] == ["b0", "b1"]  # half the seats
    s.add(seq("chat", 3))
    s.add(batch_seq("b9"))
    assert [name for name, _, n in advance(s) if n > 1] == ["chat"]
    assert sorted(q.request_id for q in s.running) == ["b0", "b1", "chat"]


def test_batch_work_gives_a_seat_back_when_interactive_work_waits() -> None:
    s = scheduler(max_num_seqs=2, batch_share=1.0)  # type: ignore[arg-type]
    s.add(batch_seq("b0"))
    s.add(batch_seq("b1"))
    advance(s)
    assert [q.request_id for q in s.running] == ["b0", "b1"]  # idle seats are filled
    s.add(seq("chat", 3))
    scheduled = advance(s)
    assert [q.request_id for q in s.running] == ["b0", "chat"]
    assert ("chat", 0, 3) in scheduled
    assert [q.request_id for q in s.waiting] == ["b1"]  # it resumes when a seat frees
    assert s.num_preemptions == 0  # not a memory preemption


def background_seq(name: str) -> Sequence:
    return Sequence(name, 0, [1, 2, 3], 3, PARAMS, priority=int(Priority.BACKGROUND))


def test_background_work_takes_at_most_the_batch_share_with_batch_work() -> None:
    s = scheduler(max_num_seqs=4, batch_share=0.5)  # type: ignore[arg-type]
    for i in range(6):
        s.add(background_seq(f"bg{i}"))
    s.add(batch_seq("b0"))
    assert [name for name, _, _ in advance(s)] == ["bg0", "bg1"]  # half the seats, no more
    s.add(seq("chat", 3))
    assert [name for name, _, n in advance(s) if n > 1] == ["chat"]
    assert sorted(q.request_id for q in s.running) == ["bg0", "bg1", "chat"]


def test_background_work_gives_a_seat_back_when_interactive_work_waits() -> None:
    s = scheduler(max_num_seqs=2, batch_share=1.0)  # type: ignore[arg-type]
    s.add(background_seq("bg0"))
    s.add(background_seq("bg1"))
    advance(s)
    s.add(seq("chat", 3))
    advance(s)
    assert [q.request_id for q in s.running] == ["bg0", "chat"]
    assert [q.request_id for q in s.waiting] == ["bg1"]

"""The engine's load snapshot (KV-cache usage, preemptions) and each output's queue time."""

from __future__ import annotations

from typing import Any

from llmserve.types import GenerateRequest

from .conftest import greedy, make_engine


def test_load_reports_kv_cache_usage_and_preemptions(llama: Any) -> None:
    # 12 blocks of 4 tokens: five requests of 9 prompt tokens cannot all hold their blocks.
    engine = make_engine(llama, num_blocks=12, max_num_batched_tokens=64)
    assert (engine.load().kv_cache_usage, engine.load().num_preemptions) == (0.0, 0)
    for i in range(5):
        engine.add_request(GenerateRequest(f"r{i}", tuple(range(10 + i, 19 + i)), greedy(8)))
    engine.step()
    used = 12 - engine.block_manager.num_free_blocks
    assert used > 0
    assert engine.load().kv_cache_usage == used / 12
    while engine.has_unfinished_requests():
        engine.step()
    load = engine.load()
    assert load.num_preemptions == engine.scheduler.num_preemptions > 0
    assert load.kv_cache_usage == 0.0


def test_outputs_carry_how_long_the_request_waited(llama: Any) -> None:
    engine = make_engine(llama, max_num_seqs=1)  # the second request waits for the first
    for name in ("first", "second"):
        engine.add_request(GenerateRequest(name, (5, 6, 7), greedy(4)))
    request_to_waits: dict[str, set[float | None]] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            request_to_waits.setdefault(output.request_id, set()).add(output.queue_time_s)
    [first], [second] = request_to_waits["first"], request_to_waits["second"]
    assert first is not None and second is not None
    assert 0 <= first < second  # the second waited through the first's four steps

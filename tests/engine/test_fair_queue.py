from __future__ import annotations

import pytest

from llmserve.engine.fair_queue import FairQueue


def drain(queue: FairQueue[str]) -> list[str]:
    return [queue.pop() for _ in range(len(queue))]


def test_a_flooding_tenant_delays_a_newcomer_by_at_most_one_round() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(200):
        queue.push(f"flood-{i}", tenant="flood")
    queue.push("single", tenant="other")
    order = drain(queue)
    assert order.index("single") == 1  # one item of the flooding tenant, then the newcomer
    assert [item for item in order if item != "single"] == [f"flood-{i}" for i in range(200)]


def test_round_robin_across_tenants_fifo_within_one() -> None:
    queue: FairQueue[str] = FairQueue()
    for item, tenant in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c"), ("b2", "b")]:
        queue.push(item, tenant=tenant)
    assert list(queue) == ["a1", "b1", "c1", "a2", "b2"]
    assert drain(queue) == ["a1", "b1", "c1", "a2", "b2"]


def test_interactive_priority_comes_before_batch() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("batch-1", tenant="a", priority=1)
    queue.push("batch-2", tenant="b", priority=1)
    queue.push("chat", tenant="a", priority=0)
    assert queue.peek() == "chat"
    assert drain(queue) == ["chat", "batch-1", "batch-2"]


def test_push_front_resumes_a_preempted_item_first() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a1", tenant="a")
    queue.push("b1", tenant="b")
    queue.push_front("b0", tenant="b")
    assert drain(queue) == ["b0", "a1", "b1"]


def test_remove_and_counts() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a1", tenant="a")
    queue.push("a2", tenant="a")
    queue.push("b1", tenant="b", priority=1)
    assert queue.count_by_tenant() == {"a": 2, "b": 1}
    assert queue.remove("a1") is True
    assert queue.remove("missing") is False
    assert queue.remove("b1") is True
    assert len(queue) == 1 and queue.count_by_tenant() == {"a": 1}
    assert queue.pop() == "a2"
    assert not queue and queue.peek() is None
    with pytest.raises(IndexError):
        queue.pop()

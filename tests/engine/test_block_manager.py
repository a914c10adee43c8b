"""The block manager's prefix cache: hits, reference counts, LRU eviction, failed steps."""

from __future__ import annotations

from llmserve.engine.block_manager import BlockManager
from llmserve.engine.sequence import Sequence
from llmserve.sampling import SamplingParams

PARAMS = SamplingParams(max_tokens=4)


def seq(tokens: list[int], name: str = "r") -> Sequence:
    return Sequence(name, 0, list(tokens), len(tokens), PARAMS)


def admit(manager: BlockManager, s: Sequence) -> int:
    """Allocate `s`'s whole prompt after its cached prefix; returns the cached token count."""
    cached = manager.cached_prefix(s)
    num_cached = len(cached) * manager.block_size
    assert manager.can_allocate(s, s.num_tokens - num_cached, cached)
    manager.allocate(s, s.num_tokens - num_cached, cached)
    manager.mark_computed()
    return num_cached


def test_equal_prefixes_share_blocks_and_the_last_token_is_always_computed() -> None:
    manager = BlockManager(10, 4, enable_prefix_caching=True)
    first, second = seq(list(range(12))), seq(list(range(12)))
    assert admit(manager, first) == 0
    assert admit(manager, second) == 8  # 12 tokens: the third block holds the last token
    assert second.block_ids[:2] == first.block_ids[:2]
    assert manager.num_free_blocks == 10 - 4


def test_a_different_earlier_block_means_no_hit_later() -> None:
    manager = BlockManager(10, 4, enable_prefix_caching=True)
    admit(manager, seq([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    assert manager.cached_prefix(seq([0, 2, 3, 4, 5, 6, 7, 8, 9])) == []


def test_freed_blocks_stay_cached_until_reused() -> None:
    manager = BlockManager(4, 4, enable_prefix_caching=True)
    first = seq(list(range(9)))
    admit(manager, first)
    manager.free(first)
    assert manager.num_free_blocks == 4
    again = seq(list(range(9)))
    assert admit(manager, again) == 8
    assert manager.num_free_blocks == 1


def test_least_recently_freed_prefix_is_evicted_first() -> None:
    manager = BlockManager(4, 4, enable_prefix_caching=True)
    old, recent = seq([1] * 5, "old"), seq([2] * 5, "recent")
    for s in (old, recent):
        admit(manager, s)
    manager.free(old)
    manager.free(recent)
    admit(manager, seq([3] * 5, "new"))  # takes the two uncached blocks, then old's
    admit(manager, seq([4] * 3, "newer"))
    assert manager.cached_prefix(seq([1] * 5)) == []
    assert len(manager.cached_prefix(seq([2] * 5))) == 1


def test_blocks_of_a_failed_step_are_not_cached() -> None:
    manager = BlockManager(8, 4, enable_prefix_caching=True)
    failed = seq(list(range(9)))
    manager.allocate(failed, 9)
    manager.forget_uncomputed()
    manager.free(failed)
    assert manager.cached_prefix(seq(list(range(9)))) == []


def test_caching_off_finds_nothing() -> None:
    manager = BlockManager(8, 4)
    admit(manager, seq(list(range(9))))
    assert manager.cached_prefix(seq(list(range(9)))) == []
    assert manager.num_cached_blocks == 0

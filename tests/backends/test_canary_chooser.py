"""The weighted canary chooser: sticky per key, even across keys, and live weights."""

from __future__ import annotations

import pytest

from llmserve.backends.canary import LocalBoard, check_weights, nth_point, variant_at
from llmserve.backends.fake import FakeBackend
from llmserve.backends.variants import VariantBackend


def canary(weights: dict[str, float]) -> VariantBackend:
    return VariantBackend("m", {name: FakeBackend("m") for name in weights}, weights)


@pytest.mark.parametrize("num_keys", [10, 40, 100, 1000])
@pytest.mark.parametrize("share", [0.1, 0.2, 0.5])
def test_keys_split_by_weight_within_one_key_and_a_half(num_keys: int, share: float) -> None:
    weights = {"v1": 1 - share, "v2": share}
    on_v2 = sum(variant_at(weights, nth_point(rank)) == "v2" for rank in range(1, num_keys + 1))
    assert abs(on_v2 - share * num_keys) <= 1.5


async def test_a_key_meets_the_same_variant_every_time() -> None:
    backend = canary({"v1": 80, "v2": 20})
    for key in (f"key-{i}" for i in range(40)):
        assert len({(await backend.choose(key))[0] for _ in range(5)}) == 1


async def test_a_weight_change_moves_only_the_keys_it_must() -> None:
    backend = canary({"v1": 80, "v2": 20})
    keys = [f"key-{i}" for i in range(100)]
    before = {key: (await backend.choose(key))[0] for key in keys}
    await backend.set_weights({"v1": 50, "v2": 50})
    after = {key: (await backend.choose(key))[0] for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(before[key] == "v1" and after[key] == "v2" for key in moved)
    assert list(after.values()).count("v2") == 50


async def test_requests_without_a_key_spread_by_weight() -> None:
    backend = canary({"v1": 90, "v2": 10})
    chosen = [(await backend.choose(None))[0] for _ in range(4000)]
    assert 300 <= chosen.count("v2") <= 500  # 400 expected; 5 standard deviations either side


async def test_the_board_gives_each_key_one_point_for_every_reader() -> None:
    board = LocalBoard()
    first = VariantBackend("m", {"a": FakeBackend(), "b": FakeBackend()}, {"a": 1, "b": 1}, board)
    second = VariantBackend("m", {"a": FakeBackend(), "b": FakeBackend()}, {"a": 1, "b": 1}, board)
    keys = [f"key-{i}" for i in range(20)]
    assert [(await first.choose(k))[0] for k in keys] == [(await second.choose(k))[0] for k in keys]


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ({"v1": 50}, "give a weight for each variant (v1, v2), and no other; got v1"),
        ({"v1": 50, "v3": 50}, "give a weight for each variant (v1, v2), and no other; got v1, v3"),
        ({"v1": 50, "v2": -1}, "the weight of variant v2 must be 0 or more"),
        ({"v1": 0, "v2": 0}, "at least one variant needs a positive weight"),
    ],
)
def test_bad_weights_are_refused(new: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_weights({"v1": 1, "v2": 1}, new)


def test_a_weight_of_zero_sends_every_key_to_the_others() -> None:
    points = [nth_point(rank) for rank in range(1, 200)] + [0.0, 0.999999999]
    assert {variant_at({"v1": 0, "v2": 100}, p) for p in points} == {"v2"}
    assert {variant_at({"v1": 100, "v2": 0}, p) for p in points} == {"v1"}
    assert {variant_at({"v1": 70, "v2": 30, "v3": 0}, p) for p in points} == {"v1", "v2"}

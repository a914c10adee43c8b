"""The weighted canary chooser: a key always meets the same variant while the weights hold.

Each key gets a fixed point in [0, 1) the first time it is seen: the n-th new key gets
frac(n * golden ratio), a sequence that covers [0, 1) evenly at every length, so even 40 keys
split 80/20 within a key or two of 8 (a hash of random key ids would be off by 4 keys or more
one run in ten). The variants split [0, 1) in config order by their share of the total weight;
a change of weights moves only the keys between the old and the new boundaries, and the keys
stay as evenly spread for the new weights. Requests without a key draw a fresh point.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Protocol

GOLDEN_FRACTION = 0.6180339887498949  # (sqrt(5) - 1) / 2


def nth_point(rank: int) -> float:
    """The point of the `rank`-th key: frac(rank * golden ratio)."""
    return (rank * GOLDEN_FRACTION) % 1.0


def variant_at(weights: Mapping[str, float], point: float) -> str:
    """The variant whose share of [0, 1) holds `point`."""
    total = sum(weights.values())
    upper = 0.0
    for name, weight in weights.items():
        upper += weight / total
        if point < upper:
            return name
    # NOTE: float rounding can leave the last sliver uncovered; it goes to a variant in use
    return [name for name, weight in weights.items() if weight > 0][-1]


def random_point() -> float:
    """The point of a request without a key: drawn afresh, so such requests spread by weight."""
    return random.random()


def check_weights(current: Mapping[str, object], new: Mapping[str, float]) -> dict[str, float]:
    """`new` in the order of `current`; ValueError unless it names each variant once with a
    weight of 0 or more (0: it gets no new request) and at least one weight is positive."""
    if set(new) != set(current):
        raise ValueError(
            f"give a weight for each variant ({', '.join(current)}), and no other; got "
            f"{', '.join(new) or 'none'}"
        )
    for name, weight in new.items():
        if not weight >= 0:
            raise ValueError(f"the weight of variant {name} must be 0 or more")
    if not sum(new.values()) > 0:
        raise ValueError("at least one variant needs a positive weight")
    return {name: float(new[name]) for name in current}


class CanaryBoard(Protocol):
    """The live weights and the keys' points, shared by every process serving the models."""

    async def read_weights(self, model: str) -> dict[str, float] | None:
        """The weights last written for `model`, or None when none were."""
        ...

    async def write_weights(self, model: str, weights: dict[str, float]) -> None:
        """Publish `weights` for `model` to every reader."""
        ...

    async def key_point(self, key: str) -> float:
        """The fixed point of `key` (given on first sight, the same for every caller after)."""
        ...


class LocalBoard:
    """A board for one process (the local runtime)."""

    def __init__(self, weights: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._weights = {model: dict(w) for model, w in (weights or {}).items()}
        self._key_to_point: dict[str, float] = {}

    async def read_weights(self, model: str) -> dict[str, float] | None:
        return self._weights.get(model)

    async def write_weights(self, model: str, weights: dict[str, float]) -> None:
        self._weights[model] = dict(weights)

    async def key_point(self, key: str) -> float:
        if key not in self._key_to_point:
            self._key_to_point[key] = nth_point(len(self._key_to_point) + 1)
        return self._key_to_point[key]

"""The canary board of the Ray runtime: one small deployment every ingress replica reads.

It holds the live weights of each canary model and each key's point, so a key meets the same
variant whichever ingress replica serves it, and a weight change made through one replica
reaches the others within a second (`VariantBackend.SYNC_INTERVAL_S`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmserve.backends.canary import LocalBoard


class BoardReplica:
    """The single replica holding the board (a `LocalBoard` behind a deployment)."""

    def __init__(self, weights: Mapping[str, Mapping[str, float]]) -> None:
        self._board = LocalBoard(weights)

    async def read_weights(self, model: str) -> dict[str, float] | None:
        return await self._board.read_weights(model)

    async def write_weights(self, model: str, weights: dict[str, float]) -> None:
        await self._board.write_weights(model, weights)

    async def key_point(self, key: str) -> float:
        return await self._board.key_point(key)


class RayCanaryBoard:
    """The `CanaryBoard` an ingress replica uses: calls on the board deployment's handle."""

    def __init__(self, handle: Any) -> None:  # ray.serve.handle.DeploymentHandle of BoardReplica
        self._handle = handle

    async def read_weights(self, model: str) -> dict[str, float] | None:
        weights: dict[str, float] | None = await self._handle.read_weights.remote(model)
        return weights

    async def write_weights(self, model: str, weights: dict[str, float]) -> None:
        await self._handle.write_weights.remote(model, weights)

    async def key_point(self, key: str) -> float:
        point: float = await self._handle.key_point.remote(key)
        return point

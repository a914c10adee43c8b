"""`PromptCacheRouter`: Serve's request router for engine deployments, keeping prompt caches warm.

It runs in each ingress (where deployment handles route) and applies cluster/cache_affinity.py:
a `prompt_cache_key` pins its requests to one replica by consistent hashing; otherwise the
replica this ingress last sent the longest prefix of the prompt to is preferred. A preferred
replica whose queue is much longer than another's is skipped (spill over). Requests with no
preference (short prompts, other methods) are routed as Serve's default router does (power of
two choices).
"""

from __future__ import annotations

from typing import Any

# NOTE: Serve's default router lives in a private module; Ray's own prefix-aware router
# subclasses it the same way.
from ray.serve._private.request_router.pow_2_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, ReplicaID, RunningReplica

from llmserve.cluster.cache_affinity import (
    DEFAULT_SPILL_MARGIN,
    PrefixMemory,
    preferred_replica,
    with_spill,
)
from llmserve.types import GenerateRequest


class PromptCacheRouter(PowerOfTwoChoicesRequestRouter):
    """Prefers the replica that holds (or will hold) the request's prompt prefix."""

    def initialize_state(
        self, block_size: int = 16, spill_margin: int = DEFAULT_SPILL_MARGIN, **kwargs: Any
    ) -> None:
        super().initialize_state(**kwargs)  # type: ignore[no-untyped-call]
        self._memory = PrefixMemory(block_size)
        self._spill_margin = spill_margin

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        request = generate_request(pending_request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        preferred = (
            None if request is None else preferred_replica(request, list(by_id), self._memory)
        )
        if preferred is None:
            ranks: list[list[RunningReplica]] = await super().choose_replicas(
                candidate_replicas, pending_request
            )
            return ranks
        queue_lens = {
            unique_id: self._replica_queue_len_cache.get(replica.replica_id) or 0
            for unique_id, replica in by_id.items()
        }
        ranked = with_spill(preferred, list(by_id), queue_lens, self._spill_margin)
        return [[by_id[i] for i in rank] for rank in ranked]

    def on_request_routed(
        self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any
    ) -> None:
        request = generate_request(pending_request)
        if request is not None:
            self._memory.remember(self._memory.block_hashes(request), replica_id.unique_id)


def generate_request(pending_request: PendingRequest | None) -> GenerateRequest | None:
    """The `GenerateRequest` a pending `generate` call carries, if any."""
    if pending_request is None:
        return None
    for arg in pending_request.args:
        if isinstance(arg, GenerateRequest):
            return arg
    return None

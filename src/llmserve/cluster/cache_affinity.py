"""Which engine replica should run a request so that its prompt prefix is found cached there.

Pure decisions, without Ray (cluster/cache_router.py applies them to Serve's replicas):

- A request with `prompt_cache_key` goes to the replica that rendezvous hashing (highest random
  weight, a consistent hash: adding or removing a replica moves only the keys it wins or held)
  picks for the key and the request's cache namespace, so every ingress sends the key's requests
  to the same replica without sharing any state.
- Without it, the replica that holds the longest cached prefix of the prompt is preferred, when
  that prefix is at least `MIN_PREFERRED_BLOCKS` blocks long (shorter ones are cheap to compute
  again: spreading the load matters more). This is an approximation: each ingress remembers the
  block hashes of the prompts it routed (a bounded LRU), not what the engines really still hold
  (they may have evicted it), nor what other ingress replicas routed.
- Either way, when the preferred replica's queue is much longer than the shortest one
  (`spill_margin` requests more), the request spills over to the others.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from llmserve.engine.block_manager import hash_block, namespace_root
from llmserve.types import GenerateRequest

DEFAULT_SPILL_MARGIN = 4  # queued requests more than the least loaded replica: "much longer"
MIN_PREFERRED_BLOCKS = 4  # a remembered prefix shorter than this sets no preference
MAX_REMEMBERED_BLOCKS = 100_000  # block hashes an ingress remembers per model (LRU)


def rendezvous_order(replica_ids: Sequence[str], key: str) -> list[str]:
    """`replica_ids` by decreasing weight for `key` (the first one owns it)."""

    def weight(replica_id: str) -> bytes:
        return hashlib.blake2b(f"{replica_id}\0{key}".encode(), digest_size=8).digest()

    return sorted(replica_ids, key=weight, reverse=True)


def affinity_key(request: GenerateRequest) -> str:
    """What requests sharing a replica share: their namespace and their `prompt_cache_key`."""
    return f"{request.cache_namespace}\0{request.prompt_cache_key}"


def with_spill(
    preferred: str, replica_ids: Sequence[str], queue_lens: Mapping[str, int], margin: int
) -> list[list[str]]:
    """Ranks of replicas to try: `preferred` first unless its queue is much longer."""
    others = [r for r in replica_ids if r != preferred]
    if not others:
        return [[preferred]]
    shortest = min(queue_lens.get(r, 0) for r in others)
    if queue_lens.get(preferred, 0) - shortest >= margin:
        return [others, [preferred]]
    return [[preferred], others]


class PrefixMemory:
    """The replica each routed prompt's blocks went to, by block hash (approximate, see above)."""

    def __init__(self, block_size: int, max_blocks: int = MAX_REMEMBERED_BLOCKS) -> None:
        self.block_size = block_size
        self.max_blocks = max_blocks
        self._hash_to_replica: OrderedDict[bytes, str] = OrderedDict()

    def block_hashes(self, request: GenerateRequest) -> list[bytes]:
        """The chained hashes of the prompt's full blocks, as the engine computes them."""
        ids, size = request.prompt_token_ids, self.block_size
        hashes: list[bytes] = []
        parent = namespace_root(request.cache_namespace)
        for start in range(0, len(ids) - size + 1, size):
            parent = hash_block(parent, ids[start : start + size])
            hashes.append(parent)
        return hashes

    def longest_prefix(self, hashes: Sequence[bytes], replica_ids: Sequence[str]) -> str | None:
        """The live replica holding the most leading blocks of `hashes` (None: no block)."""
        live = set(replica_ids)
        found, num_found = None, 0
        for block_hash in hashes:
            replica = self._hash_to_replica.get(block_hash)
            if replica is None or replica not in live:
                break
            found, num_found = replica, num_found + 1
        return found if num_found >= MIN_PREFERRED_BLOCKS else None

    def remember(self, hashes: Sequence[bytes], replica_id: str) -> None:
        """`replica_id` now holds these blocks (the oldest memories are dropped past the bound)."""
        for block_hash in hashes:
            self._hash_to_replica[block_hash] = replica_id
            self._hash_to_replica.move_to_end(block_hash)
        while len(self._hash_to_replica) > self.max_blocks:
            self._hash_to_replica.popitem(last=False)


def preferred_replica(
    request: GenerateRequest, replica_ids: Sequence[str], memory: PrefixMemory
) -> str | None:
    """The replica `request` should run on for its cache, or None (no preference)."""
    if not replica_ids:
        return None
    if request.prompt_cache_key is not None:
        return rendezvous_order(replica_ids, affinity_key(request))[0]
    return memory.longest_prefix(memory.block_hashes(request), replica_ids)

"""Counts fixed-size KV-cache blocks and shares the blocks of equal prompt prefixes.

Prefix caching follows vLLM's design. A block full of tokens is named by a hash chained from the
start of its sequence (the block's tokens and the hash of the block before), so two sequences
whose first k blocks have equal hashes have equal first k * block_size tokens, and their keys and
values there are the same. Blocks are reference-counted; a block whose count drops to zero is
free but keeps its hash, so a later sequence with the same prefix takes it back instead of
computing it again. Free blocks are reused least recently freed first (LRU); taking one forgets
its hash. Blocks that hold nothing reusable are reused before any cached one.

The chain of a sequence starts from its cache namespace (`Sequence.cache_root`, made by
`namespace_root`), not from nothing: sequences of different namespaces (API keys, cache groups,
salts) never have equal block hashes, so none reuses a block another namespace computed.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from llmserve.engine.sequence import Sequence


def num_kv_blocks(
    memory_mb: int,
    *,
    block_size: int,
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    dtype_bytes: int,
    scale_bytes: int = 0,  # per slot and KV head (an int8 cache's float32 scale)
) -> int:
    """How many blocks of keys and values fit in `memory_mb`."""
    bytes_per_row = num_kv_heads * (head_dim * dtype_bytes + scale_bytes)
    bytes_per_block = 2 * num_layers * bytes_per_row * block_size
    return max(1, memory_mb * 1024 * 1024 // bytes_per_block)


def hash_block(parent_hash: bytes, token_ids: Seq[int]) -> bytes:
    """The hash of a full block: its tokens and everything before them (via `parent_hash`)."""
    # NOTE: 128-bit BLAKE2 keeps a collision (which would silently reuse the wrong keys and
    # values) out of reach; Python's 64-bit hash() would not.
    digest = hashlib.blake2b(parent_hash, digest_size=16)
    digest.update(array("q", token_ids).tobytes())
    return digest.digest()


def namespace_root(namespace: str) -> bytes:
    """The hash a namespace's block chains start from (b"" for the shared namespace "")."""
    if not namespace:
        return b""
    return hashlib.blake2b(
        namespace.encode("utf-8"), digest_size=16, person=b"llmserve-ns"
    ).digest()


@dataclass
class Block:
    """One block's reference count and, once full and registered, the hash of its content."""

    block_id: int
    ref_count: int = 0
    block_hash: bytes | None = None


class BlockManager:
    """Hands out block ids; never more than `num_blocks`, freed blocks are reusable at once."""

    def __init__(
        self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = False
    ) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._blocks = [Block(i) for i in range(num_blocks)]
        self._free_block_ids: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._hash_to_block_id: dict[bytes, int] = {}
        self._uncomputed_block_ids: list[int] = []  # registered this step, computed by it

    @property
    def num_free_blocks(self) -> int:
        """Blocks no sequence holds, cached ones included (they are evicted on demand)."""
        return len(self._free_block_ids)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._hash_to_block_id)

    def num_blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        """Extra blocks `seq` needs to hold `num_new_tokens` more computed tokens."""
        total = seq.num_computed_tokens + num_new_tokens
        return max(0, -(-total // self.block_size) - len(seq.block_ids))

    def cached_prefix(self, seq: Sequence) -> list[int]:
        """Ids of cached blocks holding `seq`'s longest cached prefix (for a seq with no blocks).

        At least the last token is left out: the step that computes it yields the next logits.
        """
        if not self.enable_prefix_caching or seq.block_ids:
            return []
        num_blocks = (seq.num_tokens - 1) // self.block_size
        self._hash_blocks(seq, num_blocks)
        block_ids = []
        for block_hash in seq.block_hashes[:num_blocks]:
            block_id = self._hash_to_block_id.get(block_hash)
            if block_id is None:
                break
            block_ids.append(block_id)
        seq.num_seen_prompt_blocks = max(seq.num_seen_prompt_blocks, len(block_ids))
        return block_ids

    def can_allocate(self, seq: Sequence, num_new_tokens: int, cached: Seq[int] = ()) -> bool:
        """Whether `allocate(seq, num_new_tokens, cached)` would find enough free blocks."""
        num_revived = sum(1 for i in cached if self._blocks[i].ref_count == 0)
        num_fresh = self._num_fresh_blocks(seq, num_new_tokens, len(cached))
        return num_fresh + num_revived <= self.num_free_blocks

    def allocate(
        self, seq: Sequence, num_new_tokens: int, cached: Seq[int] = (), *, num_lookahead: int = 0
    ) -> None:
        """Give `seq` the blocks for `num_new_tokens` more tokens after its `cached` prefix.

        Call `can_allocate` first. A cached prefix (from `cached_prefix`) counts as computed.
        `num_lookahead` more slots hold draft tokens: never cached, rolled back by `free_tail`.
        """
        num_fresh = self._num_fresh_blocks(seq, num_new_tokens + num_lookahead, len(cached))
        for block_id in cached:
            self._take(block_id)
        if cached:  # only ever for a sequence that holds no blocks yet
            seq.block_ids.extend(cached)
            seq.num_computed_tokens = len(cached) * self.block_size
            seq.num_registered_blocks = len(cached)
        for _ in range(num_fresh):
            block_id, _ = self._free_block_ids.popitem(last=False)
            self._evict(block_id)
            self._take(block_id)
            seq.block_ids.append(block_id)
        self._register_full_blocks(seq, seq.num_computed_tokens + num_new_tokens)

    def free(self, seq: Sequence) -> None:
        """Release every block of `seq`; to run again it recomputes (or finds cached) its KV."""
        # NOTE: tail blocks first, so a prefix's last blocks are evicted before its first ones.
        for block_id in reversed(seq.block_ids):
            block = self._blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self._free_block_ids[block_id] = None
                if block.block_hash is None:  # nothing to reuse: hand it out before cached ones
                    self._free_block_ids.move_to_end(block_id, last=False)
        seq.block_ids.clear()
        seq.num_computed_tokens = 0
        seq.num_registered_blocks = 0

    def free_tail(self, seq: Sequence) -> None:
        """Release the blocks past `seq`'s computed tokens (those of its rejected drafts)."""
        num_kept = -(-seq.num_computed_tokens // self.block_size)
        for block_id in reversed(seq.block_ids[num_kept:]):
            block = self._blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:  # NOTE: a draft block is never registered: no hash to keep
                self._free_block_ids[block_id] = None
                self._free_block_ids.move_to_end(block_id, last=False)
        del seq.block_ids[num_kept:]

    def mark_computed(self) -> None:
        """The step whose blocks were registered has run: they hold real keys and values."""
        self._uncomputed_block_ids.clear()

    def forget_uncomputed(self) -> None:
        """The step failed: blocks registered for it hold no valid keys and values, uncache them."""
        for block_id in self._uncomputed_block_ids:
            self._evict(block_id)
        self._uncomputed_block_ids.clear()

    def _num_fresh_blocks(self, seq: Sequence, num_new_tokens: int, num_cached: int) -> int:
        return self.num_blocks_needed(seq, num_cached * self.block_size + num_new_tokens) - (
            num_cached
        )

    def _take(self, block_id: int) -> None:
        block = self._blocks[block_id]
        if block.ref_count == 0:
            self._free_block_ids.pop(block_id, None)
        block.ref_count += 1

    def _evict(self, block_id: int) -> None:
        block = self._blocks[block_id]
        if block.block_hash is not None:
            if self._hash_to_block_id.get(block.block_hash) == block_id:
                del self._hash_to_block_id[block.block_hash]
            block.block_hash = None

    def _register_full_blocks(self, seq: Sequence, num_tokens: int) -> None:
        """Make `seq`'s blocks that are full once `num_tokens` are computed findable by hash."""
        num_full = num_tokens // self.block_size
        if not self.enable_prefix_caching or num_full <= seq.num_registered_blocks:
            return
        self._hash_blocks(seq, num_full)
        for index in range(seq.num_registered_blocks, num_full):
            block_hash = seq.block_hashes[index]
            # NOTE: when another block already holds this content, keep that one: it may be
            # shared; this copy stays private and is freed without a hash.
            if block_hash not in self._hash_to_block_id:
                block = self._blocks[seq.block_ids[index]]
                block.block_hash = block_hash
                self._hash_to_block_id[block_hash] = block.block_id
                self._uncomputed_block_ids.append(block.block_id)
                self._count_written(seq, index)
        seq.num_registered_blocks = num_full

    def _count_written(self, seq: Sequence, index: int) -> None:
        """Count block `index` as written by `seq` when it holds prompt tokens only, once."""
        if index >= seq.num_seen_prompt_blocks and (index + 1) * self.block_size <= (
            seq.num_prompt_tokens
        ):
            seq.num_written_prompt_blocks += 1
            seq.num_seen_prompt_blocks = index + 1

    def _hash_blocks(self, seq: Sequence, num_blocks: int) -> None:
        """Extend `seq.block_hashes` to its first `num_blocks` full blocks (each hashed once)."""
        size = self.block_size
        while len(seq.block_hashes) < num_blocks:
            index = len(seq.block_hashes)
            parent = seq.block_hashes[-1] if seq.block_hashes else seq.cache_root
            tokens = seq.token_ids[index * size : (index + 1) * size]
            seq.block_hashes.append(hash_block(parent, tokens))

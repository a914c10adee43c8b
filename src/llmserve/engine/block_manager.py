"""Counts fixed-size KV-cache blocks: which sequence owns which block, and how many are free."""

from __future__ import annotations

from collections import deque

from llmserve.engine.sequence import Sequence


def num_kv_blocks(
    memory_mb: int,
    *,
    block_size: int,
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    dtype_bytes: int,
) -> int:
    """How many blocks of keys and values fit in `memory_mb`."""
    bytes_per_block = 2 * num_layers * num_kv_heads * head_dim * dtype_bytes * block_size
    return max(1, memory_mb * 1024 * 1024 // bytes_per_block)


class BlockManager:
    """Hands out block ids; never more than `num_blocks`, freed blocks are reusable at once."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free_block_ids: deque[int] = deque(range(num_blocks))

    @property
    def num_free_blocks(self) -> int:
        return len(self._free_block_ids)

    def num_blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        """Extra blocks `seq` needs to hold `num_new_tokens` more computed tokens."""
        total = seq.num_computed_tokens + num_new_tokens
        return max(0, -(-total // self.block_size) - len(seq.block_ids))

    def can_allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        return self.num_blocks_needed(seq, num_new_tokens) <= self.num_free_blocks

    def allocate(self, seq: Sequence, num_new_tokens: int) -> None:
        """Give `seq` the blocks for `num_new_tokens` more tokens (call `can_allocate` first)."""
        for _ in range(self.num_blocks_needed(seq, num_new_tokens)):
            seq.block_ids.append(self._free_block_ids.popleft())

    def free(self, seq: Sequence) -> None:
        """Return every block of `seq`; its KV must be recomputed if it runs again."""
        self._free_block_ids.extend(seq.block_ids)
        seq.block_ids.clear()
        seq.num_computed_tokens = 0

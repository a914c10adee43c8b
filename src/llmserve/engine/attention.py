"""Paged attention plugged into transformers' own model classes through `AttentionInterface`.

The model runner packs every scheduled token of a step into one row (`[1, T]`) and passes a
`PagedBatch` as the `paged_batch` keyword; transformers forwards it to this attention function
in every layer. The function writes the step's keys and values into the block-paged cache, then
attends: all one-token chunks (decodes) in one batched call, each longer prefill chunk alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ATTENTION_NAME = "llmserve_paged"


@dataclass(frozen=True)
class KVCache:
    """Per layer, keys and values for every slot: `[num_slots + 1, num_kv_heads, head_dim]`.

    The extra last slot (`pad_slot`) belongs to no sequence: it pads decode batches.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(
        cls,
        *,
        num_layers: int,
        num_slots: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
    ) -> KVCache:
        shape = (num_slots + 1, num_kv_heads, head_dim)
        keys = [_empty_but_pad_slot(shape, dtype) for _ in range(num_layers)]
        values = [_empty_but_pad_slot(shape, dtype) for _ in range(num_layers)]
        return cls(keys, values)

    @property
    def pad_slot(self) -> int:
        """The slot that pads decode batches: always zero, never handed to a sequence."""
        return self.keys[0].shape[0] - 1


def _empty_but_pad_slot(shape: tuple[int, int, int], dtype: torch.dtype) -> torch.Tensor:
    # NOTE: every slot a sequence reads is written first, except the pad slot, which decode
    # batches read masked out; it must hold finite numbers (0 * NaN is NaN), and it belongs to no
    # sequence, so no request's numbers can leak into another's row through it. Not zero-filling
    # the rest keeps resident memory proportional to the blocks actually used.
    cache = torch.empty(shape, dtype=dtype)
    cache[-1].zero_()
    return cache


@dataclass(frozen=True)
class PrefillChunk:
    """A multi-token chunk: its place in the packed row, its context slots and its mask."""

    q_start: int
    q_end: int
    context_slots: torch.Tensor  # [ctx]
    mask: torch.Tensor | None  # [n, ctx] bool, None when the chunk is the whole causal context


@dataclass(frozen=True)
class PagedBatch:
    """Everything attention needs for one step, built once and shared by all layers."""

    kv: KVCache
    slot_mapping: torch.Tensor  # [T]: where each packed token's key and value go
    num_decodes: int  # the first `num_decodes` packed tokens are one-token chunks
    decode_slots: torch.Tensor  # [D, max_ctx], padded with the pad slot
    decode_mask: torch.Tensor | None  # [D, 1, 1, max_ctx] bool; None when no row is padded
    prefills: tuple[PrefillChunk, ...]


def paged_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    paged_batch: PagedBatch | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over the block-paged cache; returns `[1, T, num_heads, head_dim]`."""
    if paged_batch is None:  # outside the engine (e.g. `model.generate`) behave like sdpa
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    batch = paged_batch
    layer_idx: int = module.layer_idx  # type: ignore[assignment]
    k_cache, v_cache = batch.kv.keys[layer_idx], batch.kv.values[layer_idx]
    k_cache.index_copy_(0, batch.slot_mapping, key[0].transpose(0, 1))
    v_cache.index_copy_(0, batch.slot_mapping, value[0].transpose(0, 1))
    outputs: list[torch.Tensor] = []
    if batch.num_decodes:
        num_decodes, num_kv_heads = batch.num_decodes, k_cache.shape[1]
        # NOTE: one query per sequence, so the query heads of a KV group can ride in the
        # "query length" axis: [D, kv, groups, d] attends to [D, kv, ctx, d] without repeating KV.
        q = (
            query[0, :, :num_decodes]
            .transpose(0, 1)
            .reshape(num_decodes, num_kv_heads, -1, query.shape[-1])
        )
        k = _gather(k_cache, batch.decode_slots).transpose(1, 2)  # [D, kv, ctx, d]
        v = _gather(v_cache, batch.decode_slots).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=batch.decode_mask, scale=scaling)
        outputs.append(out.reshape(num_decodes, -1, query.shape[-1]))  # [D, H, d]
    for chunk in batch.prefills:
        q = query[:, :, chunk.q_start : chunk.q_end]  # [1, H, n, d]
        k = k_cache.index_select(0, chunk.context_slots).transpose(0, 1).unsqueeze(0)
        v = v_cache.index_select(0, chunk.context_slots).transpose(0, 1).unsqueeze(0)
        out = _sdpa(q, k, v, chunk.mask, scaling, is_causal=chunk.mask is None)
        outputs.append(out[0].transpose(0, 1))  # [n, H, d]
    return torch.cat(outputs).unsqueeze(0), None


def _gather(cache: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """`cache[slots]` for a 2-D `slots`; index_select is much cheaper than advanced indexing."""
    rows = cache.index_select(0, slots.flatten())
    return rows.view(*slots.shape, *cache.shape[1:])


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float | None,
    *,
    is_causal: bool,
) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)


def register_paged_attention() -> None:
    """Make `attn_implementation="llmserve_paged"` available to transformers models."""
    AttentionInterface.register(ATTENTION_NAME, paged_attention)

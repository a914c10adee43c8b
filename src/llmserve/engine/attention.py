"""Paged attention plugged into transformers' own model classes through `AttentionInterface`.

The model runner packs every scheduled token of a step into one row (`[1, T]`) and passes a
`PagedBatch` as the `paged_batch` keyword; transformers forwards it to this attention function
in every layer. The function writes the step's keys and values into the block-paged cache, then
attends: all one-token chunks (decodes) in one batched call, each longer prefill chunk alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from llmserve.engine import decode_kernel

ATTENTION_NAME = "llmserve_paged"
# NOTE: the step's batch reaches attention through this variable, not through the forward's
# keywords: some families' decoder layers (StableLM) do not pass extra keywords on to attention.
_CURRENT_BATCH: ContextVar[PagedBatch | None] = ContextVar("llmserve_paged_batch", default=None)


SCALE_DTYPE = torch.float32  # an int8 cache's row scales


def row_scale_bytes(dtype: torch.dtype) -> int:
    """Bytes of scale a cache of `dtype` keeps per slot and KV head (int8: one scale, else 0)."""
    return SCALE_DTYPE.itemsize if dtype == torch.int8 else 0


@dataclass(frozen=True)
class LayerCache:
    """One layer's keys and values `[num_slots + 1, num_kv_heads, head_dim]`.

    An int8 cache also holds one float32 scale per slot and KV head (`[num_slots + 1,
    num_kv_heads]`): a row's values are its int8 numbers times its scale.
    """

    keys: torch.Tensor
    values: torch.Tensor
    key_scales: torch.Tensor | None = None
    value_scales: torch.Tensor | None = None

    def write(self, slots: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        """Store `key` and `value` (`[T, kv_heads, head_dim]`) at `slots`, quantized if int8."""
        module = None if self.key_scales is None else decode_kernel.kernel()
        for cache, scales, rows in (
            (self.keys, self.key_scales, key),
            (self.values, self.value_scales, value),
        ):
            if scales is None:
                cache.index_copy_(0, slots, rows.to(cache.dtype))
                continue
            if module is not None:  # the same numbers in one call, not a dozen operators
                module.store_int8(rows.float().contiguous(), slots, cache, scales)
                continue
            quantized, row_scales = quantize_rows(rows)
            cache.index_copy_(0, slots, quantized)
            scales.index_copy_(0, slots, row_scales)

    def read_keys(self, slots: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The keys at `slots` (any shape), `[*slots.shape, kv_heads, head_dim]` in `dtype`."""
        return _rows(self.keys, self.key_scales, slots, dtype)

    def read_values(self, slots: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The values at `slots`, as `read_keys`."""
        return _rows(self.values, self.value_scales, slots, dtype)


def quantize_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`[..., d]` as int8 and one float32 scale per row: its largest magnitude becomes 127."""
    rows = rows.float()
    scales = rows.abs().amax(-1) / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return torch.round(rows / scales.unsqueeze(-1)).to(torch.int8), scales


def _rows(
    cache: torch.Tensor, scales: torch.Tensor | None, slots: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    # NOTE: index_select on a flat index is much cheaper than advanced indexing with 2-D slots
    flat = slots.flatten()
    rows = cache.index_select(0, flat)
    if scales is not None:
        rows = rows.float() * scales.index_select(0, flat).unsqueeze(-1)
    return rows.to(dtype).view(*slots.shape, *cache.shape[1:])


@dataclass(frozen=True)
class KVCache:
    """Every layer's `LayerCache`, in `dtype` (float32, bfloat16, or int8 with row scales).

    A layer's tensors are allocated when its attention first runs, with the head count and head
    size its own module produced: layers of one model may differ, and no config field is assumed.
    The extra last slot (`pad_slot`) belongs to no sequence: it pads decode batches.
    """

    num_slots: int
    dtype: torch.dtype
    layers: dict[int, LayerCache] = field(default_factory=dict)

    @property
    def pad_slot(self) -> int:
        """The slot that pads decode batches: always zero, never handed to a sequence."""
        return self.num_slots

    def layer(self, layer_idx: int, key: torch.Tensor) -> LayerCache:
        """The layer's cache, allocated on first use from `key` (`[1, kv_heads, T, head_dim]`)."""
        if layer_idx not in self.layers:
            with torch.inference_mode(False):  # plain tensors: tests and tools may edit them
                self.layers[layer_idx] = self._allocate(
                    (self.num_slots + 1, key.shape[1], key.shape[3])
                )
        return self.layers[layer_idx]

    def _allocate(self, shape: tuple[int, int, int]) -> LayerCache:
        if self.dtype != torch.int8:
            return LayerCache(
                _empty_but_pad_slot(shape, self.dtype), _empty_but_pad_slot(shape, self.dtype)
            )
        return LayerCache(
            _empty_but_pad_slot(shape, torch.int8),
            _empty_but_pad_slot(shape, torch.int8),
            _empty_but_pad_slot(shape[:2], SCALE_DTYPE),
            _empty_but_pad_slot(shape[:2], SCALE_DTYPE),
        )


def _empty_but_pad_slot(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    # NOTE: every slot a sequence reads is written first, except the pad slot, which decode
    # batches read masked out; it must hold finite numbers (0 * NaN is NaN), and it belongs to no
    # sequence, so no request's numbers can leak into another's row through it. Not zero-filling
    # the rest keeps resident memory proportional to the blocks actually used.
    cache = torch.empty(shape, dtype=dtype)
    cache[-1].zero_()
    return cache


@dataclass(frozen=True)
class PrefillChunk:
    """A multi-token chunk: its place in the packed row and its context slots (itself last)."""

    q_start: int
    q_end: int
    context_slots: torch.Tensor  # [ctx]


@dataclass(frozen=True)
class PagedBatch:
    """Everything attention needs for one step, built once and shared by all layers."""

    kv: KVCache
    slot_mapping: torch.Tensor  # [T]: where each packed token's key and value go
    num_decodes: int  # the first `num_decodes` packed tokens are one-token chunks
    decode_slots: torch.Tensor  # [D, max_ctx], padded with the pad slot
    decode_lengths: torch.Tensor  # [D]: each decode's context length (its query is the last)
    prefills: tuple[PrefillChunk, ...]
    ran: set[int] = field(default_factory=set)  # layers whose attention ran through the cache


@dataclass(frozen=True)
class LayerOptions:
    """What one layer's module asks of attention, from the keywords transformers passes."""

    scaling: float
    window: int | None  # sliding window: a query sees its last `window` positions, itself too
    softcap: float | None  # logits become softcap * tanh(logits / softcap) (Gemma 2)
    sinks: torch.Tensor | None  # [H]: one extra logit per head that takes probability (gpt-oss)

    @classmethod
    def read(cls, head_dim: int, scaling: float | None, kwargs: dict[str, Any]) -> LayerOptions:
        window = kwargs.get("sliding_window")
        return cls(
            scaling=head_dim**-0.5 if scaling is None else float(scaling),
            window=int(window) if window else None,
            softcap=kwargs.get("softcap") or None,
            sinks=kwargs.get("s_aux"),
        )


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
    batch = paged_batch or _CURRENT_BATCH.get()
    if batch is None:  # outside the engine (e.g. `model.generate`) behave like sdpa
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    layer_idx = int(module.layer_idx)  # type: ignore[arg-type]
    options = LayerOptions.read(query.shape[-1], scaling, kwargs)
    cache = batch.kv.layer(layer_idx, key)
    cache.write(batch.slot_mapping, key[0].transpose(0, 1), value[0].transpose(0, 1))
    outputs: list[torch.Tensor] = []
    if batch.num_decodes:
        outputs.append(_decode(query, cache, batch, options))
    for chunk in batch.prefills:
        outputs.append(_prefill(query, cache, chunk, options))
    batch.ran.add(layer_idx)
    return torch.cat(outputs).unsqueeze(0), None


def _decode(
    query: torch.Tensor, cache: LayerCache, batch: PagedBatch, options: LayerOptions
) -> torch.Tensor:
    """One query per sequence, all sequences at once: `[D, H, d]`."""
    in_place = _decode_in_place(query, cache, batch, options)
    if in_place is not None:
        return in_place
    return _decode_gathered(query, cache, batch, options)


def _decode_in_place(
    query: torch.Tensor, cache: LayerCache, batch: PagedBatch, options: LayerOptions
) -> torch.Tensor | None:
    """The compiled kernel reading keys and values where they lie; None: use the gather path."""
    module = decode_kernel.kernel()
    if module is None or cache.keys.dtype not in decode_kernel.KERNEL_DTYPES:
        return None
    empty = torch.empty(0)  # no scales (not an int8 cache), no sinks
    q = query[0, :, : batch.num_decodes].transpose(0, 1).float().contiguous()  # [D, H, d]
    sinks = options.sinks
    with torch.profiler.record_function("llmserve::decode_attention"):
        out: torch.Tensor = module.decode_attention(
            q,
            cache.keys,
            cache.values,
            empty if cache.key_scales is None else cache.key_scales,
            empty if cache.value_scales is None else cache.value_scales,
            batch.decode_slots,
            batch.decode_lengths,
            empty if sinks is None else sinks.detach().float().contiguous(),
            options.scaling,
            options.window or 0,
            float(options.softcap or 0.0),
        )
    return out.to(query.dtype)


def _decode_gathered(
    query: torch.Tensor, cache: LayerCache, batch: PagedBatch, options: LayerOptions
) -> torch.Tensor:
    """The reference path: gather every decode's context, then one batched SDPA: `[D, H, d]`."""
    num_decodes, num_kv_heads = batch.num_decodes, cache.keys.shape[1]
    # NOTE: one query per sequence, so the query heads of a KV group can ride in the
    # "query length" axis: [D, kv, groups, d] attends to [D, kv, ctx, d] without repeating KV.
    q = (
        query[0, :, :num_decodes]
        .transpose(0, 1)
        .reshape(num_decodes, num_kv_heads, -1, query.shape[-1])
    )
    slots, lengths = batch.decode_slots, batch.decode_lengths
    first = 0
    if options.window is not None:  # read only the window: drop columns no row can see
        first = max(0, int(lengths.min()) - options.window)
        slots = slots[:, first:]
    positions = torch.arange(first, first + slots.shape[1])
    mask = positions[None, :] < lengths[:, None]
    if options.window is not None:
        mask &= positions[None, :] > lengths[:, None] - 1 - options.window
    k = cache.read_keys(slots, query.dtype).transpose(1, 2)  # [D, kv, ctx, d]
    v = cache.read_values(slots, query.dtype).transpose(1, 2)
    sinks = None if options.sinks is None else options.sinks.reshape(1, num_kv_heads, -1, 1)
    full = bool(mask.all())
    out = _attend(q, k, v, None if full else mask[:, None, None, :], options, sinks)
    return out.reshape(num_decodes, -1, query.shape[-1])


def _prefill(
    query: torch.Tensor, cache: LayerCache, chunk: PrefillChunk, options: LayerOptions
) -> torch.Tensor:
    """One multi-token chunk over its whole context: `[n, H, d]`."""
    q = query[:, :, chunk.q_start : chunk.q_end]  # [1, H, n, d]
    # NOTE: the cache may be kept in another dtype than the model's (engine.kv_cache_dtype)
    k = cache.read_keys(chunk.context_slots, q.dtype).transpose(0, 1).unsqueeze(0)  # [1,kv,ctx,d]
    v = cache.read_values(chunk.context_slots, q.dtype).transpose(0, 1).unsqueeze(0)
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    n, ctx = q.shape[2], k.shape[2]
    q_pos = torch.arange(ctx - n, ctx)[:, None]
    k_pos = torch.arange(ctx)[None, :]
    mask = k_pos <= q_pos
    if options.window is not None:
        mask &= k_pos > q_pos - options.window
    sinks = None if options.sinks is None else options.sinks.reshape(1, -1, 1, 1)
    out = _attend(q, k, v, mask, options, sinks)
    return out[0].transpose(0, 1)


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    options: LayerOptions,
    sinks: torch.Tensor | None,
) -> torch.Tensor:
    """softmax(q k^T * scale [softcapped], [with sinks]) v; `mask` is True where a query sees."""
    if options.softcap is None and sinks is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=options.scaling)
    scores = torch.matmul(q, k.transpose(-1, -2)) * options.scaling
    if options.softcap is not None:
        scores = torch.tanh(scores / options.softcap) * options.softcap
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    if sinks is not None:
        scores = torch.cat([scores, sinks.to(scores.dtype).expand(*scores.shape[:-1], 1)], -1)
    probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    if sinks is not None:
        probs = probs[..., :-1]
    return torch.matmul(probs, v)


@contextmanager
def attending(batch: PagedBatch) -> Iterator[None]:
    """Within this block, every layer's paged attention on this thread uses `batch`."""
    token = _CURRENT_BATCH.set(batch)
    try:
        yield
    finally:
        _CURRENT_BATCH.reset(token)


def register_paged_attention() -> None:
    """Make `attn_implementation="llmserve_paged"` available to transformers models."""
    AttentionInterface.register(ATTENTION_NAME, paged_attention)

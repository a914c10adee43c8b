"""The only part of the engine that touches torch: packs a step, runs the model, returns logits."""

from __future__ import annotations

from typing import Any

import torch

from llmserve.engine.attention import (
    ATTENTION_NAME,
    KVCache,
    PagedBatch,
    PrefillChunk,
    register_paged_attention,
)
from llmserve.engine.scheduler import ScheduledChunk, SchedulerOutput


class ModelRunner:
    """Runs a transformers causal LM over the block-paged KV cache."""

    def __init__(self, model: Any, *, num_blocks: int, block_size: int) -> None:
        register_paged_attention()
        model.set_attn_implementation(ATTENTION_NAME)
        self.model = model
        self.block_size = block_size
        config = model.config.get_text_config()
        head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self.kv = KVCache.allocate(
            num_layers=config.num_hidden_layers,
            num_slots=num_blocks * block_size,
            num_kv_heads=config.num_key_value_heads,
            head_dim=head_dim,
            dtype=model.dtype,
        )

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> torch.Tensor:
        """Logits `[num_sampled, vocab]` (float32) for the chunks that end their sequence."""
        input_ids: list[int] = []
        positions: list[int] = []
        for chunk in out.chunks:
            input_ids += chunk.seq.token_ids[chunk.start : chunk.start + chunk.num_tokens]
            positions += range(chunk.start, chunk.start + chunk.num_tokens)
        batch = self._paged_batch(out.chunks)
        keep = self._sampled_rows(out.chunks)
        result = self.model(
            input_ids=torch.tensor([input_ids]),
            position_ids=torch.tensor([positions]),
            use_cache=False,
            logits_to_keep=keep,
            paged_batch=batch,
        )
        logits: torch.Tensor = result.logits[0].float()
        return logits

    def _slots(self, block_ids: list[int], end: int, start: int = 0) -> torch.Tensor:
        positions = torch.arange(start, end)
        table = torch.tensor(block_ids)
        return table[positions // self.block_size] * self.block_size + positions % self.block_size

    def _paged_batch(self, chunks: list[ScheduledChunk]) -> PagedBatch:
        slot_parts: list[torch.Tensor] = []
        decode_slots: list[torch.Tensor] = []
        prefills: list[PrefillChunk] = []
        q_start = 0
        for chunk in chunks:
            end = chunk.start + chunk.num_tokens
            context = self._slots(chunk.seq.block_ids, end)
            slot_parts.append(context[chunk.start :])
            if chunk.num_tokens == 1:
                decode_slots.append(context)
            else:
                prefills.append(
                    PrefillChunk(q_start, q_start + chunk.num_tokens, context, _mask(chunk))
                )
            q_start += chunk.num_tokens
        padded, mask = _pad_decodes(decode_slots, self.kv.pad_slot)
        return PagedBatch(
            kv=self.kv,
            slot_mapping=torch.cat(slot_parts),
            num_decodes=len(decode_slots),
            decode_slots=padded,
            decode_mask=mask,
            prefills=tuple(prefills),
        )

    @staticmethod
    def _sampled_rows(chunks: list[ScheduledChunk]) -> torch.Tensor:
        rows: list[int] = []
        end = 0
        for chunk in chunks:
            end += chunk.num_tokens
            if chunk.is_last:
                rows.append(end - 1)
        return torch.tensor(rows, dtype=torch.long)


def _mask(chunk: ScheduledChunk) -> torch.Tensor | None:
    """Causal mask of a prefill chunk over its whole context; None for a fresh full prompt."""
    if chunk.start == 0:
        return None
    q_positions = torch.arange(chunk.start, chunk.start + chunk.num_tokens)
    k_positions = torch.arange(chunk.start + chunk.num_tokens)
    return k_positions[None, :] <= q_positions[:, None]


def _pad_decodes(
    slots: list[torch.Tensor], pad_slot: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode context slots padded to one length, and the mask of real positions (if needed)."""
    if not slots:
        return torch.zeros(0, 1, dtype=torch.long), None
    lengths = [len(s) for s in slots]
    padded = torch.nn.utils.rnn.pad_sequence(slots, batch_first=True, padding_value=pad_slot)
    if min(lengths) == max(lengths):
        return padded, None
    mask = torch.arange(padded.shape[1]) < torch.tensor(lengths)[:, None]
    return padded, mask[:, None, None, :]

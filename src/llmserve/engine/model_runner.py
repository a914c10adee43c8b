"""The only part of the engine that touches torch: packs a step, runs the model, returns logits."""

from __future__ import annotations

from typing import Any

import torch

from llmserve.engine.attention import (
    ATTENTION_NAME,
    KVCache,
    PagedBatch,
    PrefillChunk,
    attending,
    register_paged_attention,
)
from llmserve.engine.lean_decode import LeanDecode, LeanStep
from llmserve.engine.scheduler import ScheduledChunk, SchedulerOutput

# engine.kv_cache_dtype's values but auto
KV_CACHE_DTYPES = {"bfloat16": torch.bfloat16, "int8": torch.int8}


class ModelRunner:
    """Runs a transformers causal LM over the block-paged KV cache."""

    def __init__(
        self,
        model: Any,
        *,
        num_blocks: int,
        block_size: int,
        kv_dtype: torch.dtype | None = None,  # None: the model's dtype
        lean_decode: LeanDecode = "off",
    ) -> None:
        register_paged_attention()
        model.set_attn_implementation(ATTENTION_NAME)
        self.model = model
        self.lean = LeanStep.build(model, lean_decode)
        self.block_size = block_size
        self.kv = KVCache(num_slots=num_blocks * block_size, dtype=kv_dtype or model.dtype)
        self.layers_ran: frozenset[int] = frozenset()  # layers whose attention ran last step

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> torch.Tensor:
        """Logits `[num_sampled, vocab]` (float32) for the chunks that end their sequence.

        A chunk with drafts has one row for its last token and one per draft, in order.
        """
        if self.lean is not None and self.lean.takes(out.chunks) and self.lean.ready(self.kv):
            contexts = [
                self._slots(c.seq.block_ids, c.start + c.num_query_tokens) for c in out.chunks
            ]
            self.layers_ran = self.lean.layer_ids
            return self.lean.run(out.chunks, self.kv, contexts)
        input_ids: list[int] = []
        positions: list[int] = []
        for chunk in out.chunks:
            input_ids += chunk.seq.token_ids[chunk.start : chunk.start + chunk.num_tokens]
            input_ids += chunk.draft_token_ids
            positions += range(chunk.start, chunk.start + chunk.num_query_tokens)
        batch = self._paged_batch(out.chunks)
        keep = self._sampled_rows(out.chunks)
        with attending(batch):
            result = self.model(
                input_ids=torch.tensor([input_ids]),
                position_ids=torch.tensor([positions]),
                use_cache=False,
                logits_to_keep=keep,
            )
        self.layers_ran = frozenset(batch.ran)
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
            end = chunk.start + chunk.num_query_tokens
            context = self._slots(chunk.seq.block_ids, end)
            slot_parts.append(context[chunk.start :])
            if chunk.num_query_tokens == 1:
                decode_slots.append(context)
            else:
                prefills.append(PrefillChunk(q_start, q_start + chunk.num_query_tokens, context))
            q_start += chunk.num_query_tokens
        padded = _pad_decodes(decode_slots, self.kv.pad_slot)
        return PagedBatch(
            kv=self.kv,
            slot_mapping=torch.cat(slot_parts),
            num_decodes=len(decode_slots),
            decode_slots=padded,
            decode_lengths=torch.tensor([len(s) for s in decode_slots], dtype=torch.long),
            prefills=tuple(prefills),
        )

    @staticmethod
    def _sampled_rows(chunks: list[ScheduledChunk]) -> torch.Tensor:
        rows: list[int] = []
        end = 0
        for chunk in chunks:
            end += chunk.num_query_tokens
            rows += range(end - chunk.num_sampled, end)
        return torch.tensor(rows, dtype=torch.long)


def kv_cache_dtype(setting: str, model_dtype: torch.dtype) -> torch.dtype:
    """The KV cache's element type for `engine.kv_cache_dtype`: `auto` is the model's own."""
    return model_dtype if setting == "auto" else KV_CACHE_DTYPES[setting]


def _pad_decodes(slots: list[torch.Tensor], pad_slot: int) -> torch.Tensor:
    """Decode context slots padded with the pad slot to one length."""
    if not slots:
        return torch.zeros(0, 1, dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(slots, batch_first=True, padding_value=pad_slot)

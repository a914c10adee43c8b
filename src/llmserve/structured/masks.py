"""Applies the grammar masks of a batch to its logits, before any sampling decision."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmserve.structured.grammar import GrammarCompiler, GrammarMatcher


@torch.inference_mode()  # NOTE: the logits are inference tensors: updated in place only here
def apply_grammar_masks(
    logits: torch.Tensor, matchers: Sequence[GrammarMatcher | None], compiler: GrammarCompiler
) -> None:
    """Set the logits of every token a row's grammar forbids to -inf (rows without one: as is).

    Tokens past the tokenizer's vocabulary (padding rows of the embedding) are never allowed.
    """
    rows = [(m, i) for i, m in enumerate(matchers) if m is not None]
    if not rows:
        return
    vocab_size = logits.shape[-1]
    # NOTE: as wide as the wider of logits and tokenizer: either may hold padding tokens.
    width = (max(vocab_size, compiler.vocab_size) + 31) // 32
    bitmask = np.zeros((len(rows), width), dtype=np.int32)
    compiler.fill_bitmask([(m, k) for k, (m, _) in enumerate(rows)], bitmask)
    allowed = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :vocab_size]
    forbidden = torch.from_numpy(allowed == 0)
    for k, (_, row) in enumerate(rows):
        logits[row].masked_fill_(forbidden[k], float("-inf"))  # in place: no copy of the rows

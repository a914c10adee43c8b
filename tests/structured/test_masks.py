"""Grammar masks on logits: the same as llguidance's reference, constrained rows only."""

from __future__ import annotations

from pathlib import Path

import llguidance.numpy
import pytest
import torch
from transformers import AutoTokenizer

from llmserve.models.builtin import ensure_tiny_chat
from llmserve.structured.llguidance_compiler import LlguidanceCompiler
from llmserve.structured.masks import apply_grammar_masks
from llmserve.types import GrammarSpec


@pytest.fixture(scope="module")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> LlguidanceCompiler:
    home: Path = tmp_path_factory.mktemp("home")
    return LlguidanceCompiler.from_hf(AutoTokenizer.from_pretrained(ensure_tiny_chat(home)))


@pytest.mark.parametrize(
    "spec",
    [
        GrammarSpec("regex", "[0-9]+"),  # few tokens allowed
        GrammarSpec("regex", '[^"]*'),  # most tokens allowed
    ],
)
def test_masks_match_llguidance_reference_and_skip_free_rows(
    compiler: LlguidanceCompiler, spec: GrammarSpec
) -> None:
    padded_vocab = compiler.vocab_size + 64  # an embedding padded past the tokenizer
    logits = torch.randn(3, padded_vocab)
    expected = logits.clone().numpy()
    matcher = compiler.new_matcher(spec)
    apply_grammar_masks(logits, [matcher, None, matcher.copy()], compiler)

    bitmask = llguidance.numpy.allocate_token_bitmask(1, compiler.vocab_size)
    bitmask[:] = 0
    llguidance.numpy.fill_next_token_bitmask(compiler.new_matcher(spec).inner, bitmask)  # type: ignore[attr-defined]
    for row in (0, 2):
        llguidance.numpy.apply_token_bitmask_inplace(expected[row : row + 1], bitmask)
    assert torch.equal(logits, torch.from_numpy(expected))
    assert torch.isinf(logits[0, compiler.vocab_size :]).all()  # padding is never allowed
    assert torch.isfinite(logits[1]).all()

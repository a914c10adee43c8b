"""Every family served by the engine equals transformers' greedy `generate`, past the window."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from llmserve.engine.quantization import quantize_int8
from llmserve.engine.warmup import verify_engine
from llmserve.types import GenerateRequest
from tests.engine.conftest import greedy, hf_greedy, make_engine, output_ids, run_all

from .families import FAMILIES, WINDOW, family_model


def prompts(num: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    lengths = [3 * WINDOW, 3 * WINDOW + 5, 5, WINDOW + 1][:num]
    return [[rng.randrange(1, 300) for _ in range(n)] for n in lengths]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_equals_generate_past_the_window(family: str) -> None:
    model = family_model(family)
    batch = prompts(4, seed=len(family))
    expected = [hf_greedy(model, prompt, 12) for prompt in batch]  # before the engine plugs in
    engine = make_engine(model, max_num_batched_tokens=16)
    requests = [GenerateRequest(f"r{i}", tuple(p), greedy(12)) for i, p in enumerate(batch)]
    results = run_all(engine, requests)
    for i in range(len(batch)):
        assert output_ids(results[(f"r{i}", 0)]) == expected[i], f"prompt {i}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_warmup_proves_every_layer_ran_through_the_paged_cache(family: str) -> None:
    model = family_model(family)
    engine = make_engine(model)
    verify_engine(engine.runner, max_model_len=256)  # raises ModelRefusedError when not exact
    num_layers = model.config.get_text_config().num_hidden_layers
    assert engine.runner.layers_ran == frozenset(range(num_layers))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_int8_weights_agree_and_the_engine_stays_exact(family: str) -> None:
    reference = family_model(family)
    quantized = copy.deepcopy(reference)
    quantize_int8(quantized, reduce_range=False)
    prompt = prompts(1, seed=7)[0]  # 3x the window
    ids = torch.tensor([[(37 * i) % 290 + 5 for i in range(4 * WINDOW)]])
    with torch.inference_mode():
        top_ref = reference(ids).logits[0].argmax(-1)
        top_int8 = quantized(ids).logits[0].argmax(-1)
    assert (top_ref == top_int8).float().mean().item() >= 0.75
    expected = hf_greedy(quantized, prompt, 10)
    results = run_all(make_engine(quantized), [GenerateRequest("q", tuple(prompt), greedy(10))])
    assert output_ids(results[("q", 0)]) == expected

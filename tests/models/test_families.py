"""Every family served by the engine equals transformers' greedy `generate`, past the window."""

from __future__ import annotations

import random

import pytest

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

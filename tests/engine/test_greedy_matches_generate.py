from __future__ import annotations

import random
from typing import Any

import pytest

from llmserve.types import GenerateRequest

from .conftest import greedy, hf_greedy, make_engine, output_ids, run_all, tiny_model


def prompts(num: int, seed: int = 1) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, 300) for _ in range(rng.randrange(3, 40))] for _ in range(num)]


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_mixed_batch_greedy_equals_generate(arch: str) -> None:
    model = tiny_model(arch)
    engine = make_engine(model, max_num_batched_tokens=32)
    batch = prompts(5)
    requests = [GenerateRequest(f"r{i}", tuple(p), greedy(12)) for i, p in enumerate(batch)]
    results = run_all(engine, requests)
    for i, prompt in enumerate(batch):
        assert output_ids(results[(f"r{i}", 0)]) == hf_greedy(model, prompt, 12)


def test_requests_joining_mid_way_match_generate(llama: Any) -> None:
    engine = make_engine(llama, max_num_batched_tokens=16)
    batch = prompts(4, seed=2)
    results: dict[str, list[int]] = {}
    pending = [GenerateRequest(f"r{i}", tuple(p), greedy(10)) for i, p in enumerate(batch)]
    engine.add_request(pending.pop(0))
    while engine.has_unfinished_requests() or pending:
        if pending:
            engine.add_request(pending.pop(0))
        for out in engine.step():
            results.setdefault(out.request_id, []).extend(out.token_ids)
    for i, prompt in enumerate(batch):
        assert results[f"r{i}"] == hf_greedy(llama, prompt, 10)


def test_preemption_with_tiny_block_budget_still_matches(llama: Any) -> None:
    # 12 blocks of 4 tokens: not enough for all five sequences at once.
    engine = make_engine(llama, num_blocks=12, max_num_batched_tokens=64)
    batch = prompts(5, seed=3)
    requests = [GenerateRequest(f"r{i}", tuple(p), greedy(8)) for i, p in enumerate(batch)]
    for request in requests:
        engine.add_request(request)
    results: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            results.setdefault(out.request_id, []).extend(out.token_ids)
    for i, prompt in enumerate(batch):
        assert results[f"r{i}"] == hf_greedy(llama, prompt, 8)
    assert engine.scheduler.num_preemptions > 0
    assert engine.block_manager.num_free_blocks == 12

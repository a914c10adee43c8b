"""Prefix caching: reused KV blocks never change greedy output, and the reuse is reported."""

from __future__ import annotations

import random
from typing import Any

from llmserve.types import GenerateRequest

from .conftest import greedy, hf_greedy, make_engine, output_ids, run_all

BLOCK_SIZE = 4  # make_engine's block size


def random_ids(num: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, 300) for _ in range(num)]


def cacheable(num_tokens: int) -> int:
    """Tokens of a prompt the cache can serve: whole blocks, never the last token."""
    return (num_tokens - 1) // BLOCK_SIZE * BLOCK_SIZE


def generate_one(engine: Any, request_id: str, prompt: list[int], max_tokens: int) -> Any:
    outputs = run_all(engine, [GenerateRequest(request_id, tuple(prompt), greedy(max_tokens))])
    return outputs[(request_id, 0)]


def test_second_turn_reuses_the_first_and_matches_uncached(llama: Any) -> None:
    cached_engine = make_engine(llama)
    uncached_engine = make_engine(llama, enable_prefix_caching=False)
    turn1 = random_ids(37, seed=1)
    reply = output_ids(generate_one(cached_engine, "t1", turn1, 10))
    turn2 = turn1 + reply + random_ids(9, seed=2)
    second = generate_one(cached_engine, "t2", turn2, 12)
    # The reply's last token was sampled, never fed back: its KV is not in the cache.
    assert second[-1].num_cached_tokens == (len(turn1) + len(reply) - 1) // BLOCK_SIZE * BLOCK_SIZE
    assert output_ids(second) == output_ids(generate_one(uncached_engine, "t2", turn2, 12))
    assert output_ids(second) == hf_greedy(llama, turn2, 12)


def test_without_caching_nothing_is_reported_cached(llama: Any) -> None:
    engine = make_engine(llama, enable_prefix_caching=False)
    prompt = random_ids(30, seed=3)
    generate_one(engine, "a", prompt, 2)
    assert generate_one(engine, "b", prompt, 2)[-1].num_cached_tokens == 0


def test_shared_system_prompt_is_computed_once(llama: Any) -> None:
    engine = make_engine(llama, max_num_batched_tokens=64)
    system = random_ids(40, seed=4)
    prompts = [system + random_ids(5 + i, seed=10 + i) for i in range(4)]
    first = generate_one(engine, "first", prompts[0], 6)
    assert first[-1].num_cached_tokens == 0
    requests = [GenerateRequest(f"r{i}", tuple(p), greedy(6)) for i, p in enumerate(prompts)]
    results = run_all(engine, requests[1:])
    for i, prompt in enumerate(prompts[1:], start=1):
        outputs = results[(f"r{i}", 0)]
        assert outputs[-1].num_cached_tokens == 40
        assert output_ids(outputs) == hf_greedy(llama, prompt, 6)


def test_n_choices_share_the_prompt_and_match_generate(llama: Any) -> None:
    engine = make_engine(llama)
    prompt = random_ids(29, seed=5)
    results = run_all(engine, [GenerateRequest("n", tuple(prompt), greedy(8, n=3))])
    expected = hf_greedy(llama, prompt, 8)
    assert [output_ids(results[("n", i)]) for i in range(3)] == [expected] * 3
    cached = [results[("n", i)][-1].num_cached_tokens for i in range(3)]
    assert cached == [0, cacheable(29), cacheable(29)]


def test_preemption_with_shared_prefixes_matches_uncached(llama: Any) -> None:
    # 14 blocks of 4 tokens: too few for five 30-token sequences, so some are preempted.
    system = random_ids(16, seed=6)
    prompts = [system + random_ids(8 + i, seed=20 + i) for i in range(5)]

    def run(enable: bool) -> tuple[dict[str, list[int]], Any]:
        engine = make_engine(
            llama, num_blocks=14, max_num_batched_tokens=64, enable_prefix_caching=enable
        )
        requests = [GenerateRequest(f"r{i}", tuple(p), greedy(10)) for i, p in enumerate(prompts)]
        results = run_all(engine, requests)
        return {key[0]: output_ids(outs) for key, outs in results.items()}, engine

    cached, cached_engine = run(True)
    uncached, _ = run(False)
    assert cached == uncached
    assert cached["r0"] == hf_greedy(llama, prompts[0], 10)
    assert cached_engine.scheduler.num_preemptions > 0
    assert cached_engine.block_manager.num_free_blocks == 14


def test_preempted_sequence_resumes_from_its_cached_blocks(llama: Any) -> None:
    engine = make_engine(llama, num_blocks=9, max_num_batched_tokens=64)
    old, new = random_ids(16, seed=7), random_ids(15, seed=8)
    requests = [GenerateRequest("old", tuple(old), greedy(12))]
    requests.append(GenerateRequest("new", tuple(new), greedy(12)))
    results = run_all(engine, requests)
    assert engine.scheduler.num_preemptions > 0
    assert output_ids(results[("old", 0)]) == hf_greedy(llama, old, 12)
    assert output_ids(results[("new", 0)]) == hf_greedy(llama, new, 12)
    # Reported reuse is what the prompt found at first admission, not after a preemption.
    assert results[("new", 0)][-1].num_cached_tokens == 0

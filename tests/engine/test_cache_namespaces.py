"""Prefix-cache namespaces: a block computed in one namespace is never reused in another, even
under preemption and eviction, and greedy outputs stay the same as without caching."""

from __future__ import annotations

import random
from typing import Any

from llmserve.types import GenerateRequest

from .conftest import greedy, hf_greedy, make_engine, output_ids, run_all

BLOCK_SIZE = 4  # make_engine's block size


def random_ids(num: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, 300) for _ in range(num)]


def run_one(engine: Any, request_id: str, prompt: list[int], namespace: str) -> Any:
    request = GenerateRequest(request_id, tuple(prompt), greedy(6), cache_namespace=namespace)
    return run_all(engine, [request])[(request_id, 0)]


def test_other_namespaces_never_reuse_a_block(llama: Any) -> None:
    engine = make_engine(llama)
    prompt = random_ids(41, seed=1)
    first = run_one(engine, "a1", prompt, "key:a")
    assert first[-1].num_cached_tokens == 0
    assert first[-1].num_cache_write_tokens == 40  # ten full prompt blocks written
    again = run_one(engine, "a2", prompt, "key:a")
    assert again[-1].num_cached_tokens == 40
    assert again[-1].num_cache_write_tokens == 0
    for namespace in ("key:b", "key:a|salt:s1", "group:team", "anonymous", ""):
        other = run_one(engine, f"x-{namespace}", prompt, namespace)
        assert other[-1].num_cached_tokens == 0, namespace
        assert output_ids(other) == output_ids(first)
    assert output_ids(first) == hf_greedy(llama, prompt, 6)


def test_same_namespace_shares_across_requests(llama: Any) -> None:
    engine = make_engine(llama)
    system = random_ids(24, seed=2)
    run_one(engine, "g1", system + random_ids(7, seed=3), "group:team")
    shared = run_one(engine, "g2", system + random_ids(9, seed=4), "group:team")
    assert shared[-1].num_cached_tokens == 24
    salted = run_one(engine, "g3", system + random_ids(9, seed=4), "group:team|salt:x")
    assert salted[-1].num_cached_tokens == 0


def test_isolation_holds_under_preemption_and_eviction(llama: Any) -> None:
    # 14 blocks of 4 tokens: too few for five 30-token sequences, so some are preempted and
    # cached blocks are evicted; each namespace must still find only its own blocks.
    system = random_ids(16, seed=6)
    prompts = [system + random_ids(8 + i, seed=20 + i) for i in range(6)]
    namespaces = ["key:a", "key:b", "key:a", "key:b", "key:a|salt:s", "key:a|salt:t"]

    def run(enable: bool) -> tuple[dict[str, Any], Any]:
        engine = make_engine(
            llama, num_blocks=14, max_num_batched_tokens=64, enable_prefix_caching=enable
        )
        requests = [
            GenerateRequest(f"r{i}", tuple(p), greedy(10), cache_namespace=ns)
            for i, (p, ns) in enumerate(zip(prompts, namespaces, strict=True))
        ]
        return {key[0]: outs for key, outs in run_all(engine, requests).items()}, engine

    cached, engine = run(True)
    uncached, _ = run(False)
    assert engine.scheduler.num_preemptions > 0
    assert {k: output_ids(v) for k, v in cached.items()} == {
        k: output_ids(v) for k, v in uncached.items()
    }
    # Each namespace's first request found nothing: no other namespace's blocks.
    for first in ("r0", "r1", "r4", "r5"):
        assert cached[first][-1].num_cached_tokens == 0, first
    # Later requests of a namespace may hit their own blocks (if not evicted), never more.
    for later in ("r2", "r3"):
        assert cached[later][-1].num_cached_tokens in (0, 4, 8, 12, 16)
    # After the run, every cached hash is reachable only from its own namespace.
    probe = run_one(engine, "probe", prompts[0], "key:c")
    assert probe[-1].num_cached_tokens == 0

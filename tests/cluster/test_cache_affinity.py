"""Replica choice for prompt caching, without Ray: consistent hashing of `prompt_cache_key`,
spill-over when the chosen replica's queue is much longer, longest remembered prefix otherwise."""

from __future__ import annotations

from llmserve.cluster.cache_affinity import (
    PrefixMemory,
    preferred_replica,
    rendezvous_order,
    with_spill,
)
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest

REPLICAS = ["r-a", "r-b", "r-c"]


def request(ids: list[int], key: str | None = None, namespace: str = "key:a") -> GenerateRequest:
    return GenerateRequest(
        "req",
        tuple(ids),
        SamplingParams(max_tokens=1),
        cache_namespace=namespace,
        prompt_cache_key=key,
    )


def test_a_key_always_picks_the_same_replica_and_keys_spread() -> None:
    memory = PrefixMemory(block_size=4)
    chosen = {preferred_replica(request([1, 2, 3], f"k{i}"), REPLICAS, memory) for i in range(60)}
    assert chosen == set(REPLICAS)  # keys spread over every replica
    for i in range(20):
        picks = {preferred_replica(request([i] * 9, "conv-7"), REPLICAS, memory) for _ in range(5)}
        assert len(picks) == 1  # whatever the prompt, the key decides


def test_the_namespace_is_part_of_the_key() -> None:
    memory = PrefixMemory(block_size=4)
    picks = {
        preferred_replica(request([1], "same", namespace=f"key:{i}"), REPLICAS, memory)
        for i in range(40)
    }
    assert len(picks) > 1


def test_removing_a_replica_moves_only_its_keys() -> None:
    keys = [f"k{i}" for i in range(200)]
    before = {k: rendezvous_order(REPLICAS, k)[0] for k in keys}
    after = {k: rendezvous_order(REPLICAS[:2], k)[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "r-c" for k in moved)


def test_spill_over_only_when_the_queue_is_much_longer() -> None:
    assert with_spill("r-a", REPLICAS, {"r-a": 3, "r-b": 0, "r-c": 1}, 4)[0] == ["r-a"]
    ranks = with_spill("r-a", REPLICAS, {"r-a": 6, "r-b": 2, "r-c": 1}, 4)
    assert ranks == [["r-b", "r-c"], ["r-a"]]
    assert with_spill("r-a", ["r-a"], {"r-a": 50}, 4) == [["r-a"]]


def test_without_a_key_the_longest_remembered_prefix_wins() -> None:
    memory = PrefixMemory(block_size=4)
    system = list(range(1, 25))  # six blocks
    memory.remember(memory.block_hashes(request(system[:16])), "r-b")
    memory.remember(memory.block_hashes(request([*system, 50, 51, 52, 53])), "r-c")
    assert preferred_replica(request([*system, 60, 61, 62, 63, 64]), REPLICAS, memory) == "r-c"
    assert preferred_replica(request([99] * 8), REPLICAS, memory) is None
    # Another namespace's prompt has other block hashes: no preference from it.
    assert preferred_replica(request(system, namespace="key:b"), REPLICAS, memory) is None
    # A short remembered prefix sets no preference (spreading the load matters more).
    memory.remember(memory.block_hashes(request([7] * 12)), "r-a")
    assert preferred_replica(request([7] * 13), REPLICAS, memory) is None
    # A replica that is gone is never preferred.
    assert preferred_replica(request([*system, 1]), ["r-a", "r-b"], memory) is None


def test_engine_deployments_use_the_cache_router() -> None:
    import importlib
    import warnings

    from llmserve.cluster.deployments import CACHE_ROUTER, engine_options
    from llmserve.config import ModelConfig, ServerConfig

    model = ModelConfig("m", source="llmserve/tiny-chat")
    options = engine_options(model, ServerConfig(models=(model,)))
    router = options["request_router_config"]
    assert router["request_router_class"] == CACHE_ROUTER
    assert router["request_router_kwargs"] == {"block_size": 16}
    module, name = CACHE_ROUTER.rsplit(".", 1)
    with warnings.catch_warnings():  # NOTE: ray.serve's own pydantic deprecation warnings
        warnings.simplefilter("ignore")
        router_class = getattr(importlib.import_module(module), name)
    assert router_class.__name__ == "PromptCacheRouter"

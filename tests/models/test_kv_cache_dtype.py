"""`engine.kv_cache_dtype`: bfloat16 (half the cache's bytes) and int8 (about a quarter).

A bfloat16 or int8 cache rounds every key and value, so it is not bit-exact with transformers'
float32 forward: answers are held to the int8 tests' measure instead (top-1 agreement of at least
0.75 with transformers' greedy tokens), on prompts longer than 32 tokens that cross the window.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import openai
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from llmserve.config import EngineConfig, SpeculativeConfig
from llmserve.engine import decode_kernel
from llmserve.engine.llm_engine import LLMEngine
from llmserve.engine.quantization import quantize_int8
from llmserve.engine.warmup import verify_engine
from llmserve.types import GenerateOutput, GenerateRequest
from tests.engine.conftest import greedy, hf_greedy, make_engine, output_ids, run_all

from .families import WINDOW, family_model

AGREEMENT = 0.75  # the int8 tests' top-1 agreement
NUM_TOKENS = 12
SMALL_CHUNKS = dict(max_num_batched_tokens=16)
CACHE_DTYPES = ["bfloat16", "int8"]


def long_prompts(seed: int) -> list[list[int]]:
    """Prompts of more than 32 tokens (more than 4x the window), and one short one beside them."""
    rng = random.Random(seed)
    return [[rng.randrange(1, 300) for _ in range(n)] for n in (40, 53, 5, 4 * WINDOW + 3)]


def agreement(got: Sequence[int], want: Sequence[int]) -> float:
    """The share of positions where the greedy tokens are the same."""
    return sum(a == b for a, b in zip(got, want, strict=True)) / len(want)


def answers(engine: LLMEngine, batch: list[list[int]]) -> list[list[int]]:
    requests = [GenerateRequest(f"r{i}", tuple(p), greedy(NUM_TOKENS)) for i, p in enumerate(batch)]
    results = run_all(engine, requests)
    return [output_ids(results[(f"r{i}", 0)]) for i in range(len(batch))]


def one(
    engine: LLMEngine,
    request_id: str,
    prompt: list[int],
    max_tokens: int = NUM_TOKENS,
    prediction: list[int] | None = None,
) -> list[GenerateOutput]:
    request = GenerateRequest(
        request_id, tuple(prompt), greedy(max_tokens), prediction_token_ids=tuple(prediction or ())
    )
    return run_all(engine, [request])[(request_id, 0)]


def answers_and_kernel_calls(
    engine: LLMEngine, batch: list[list[int]]
) -> tuple[list[list[int]], int]:
    """The engine's answers, and how many times the compiled decode kernel ran for them."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = answers(engine, batch)
    calls = sum(e.count for e in prof.key_averages() if e.key == "llmserve::decode_attention")
    return got, calls


def assert_close_to(got: list[list[int]], want: list[list[int]]) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g[0] == w[0], f"prompt {i}: first token {g[0]} != {w[0]}"
        assert agreement(g, w) >= AGREEMENT, f"prompt {i}: {g} vs {w}"


def test_a_bfloat16_cache_holds_twice_the_blocks_in_bfloat16() -> None:
    model = family_model("llama")
    auto, bf16 = make_engine(model), make_engine(model, kv_cache_dtype="bfloat16")
    assert bf16.block_manager.num_blocks == 2 * auto.block_manager.num_blocks
    for engine in (auto, bf16):
        answers(engine, [list(range(1, 41))])
    num_layers = model.config.num_hidden_layers
    for engine, dtype in ((auto, torch.float32), (bf16, torch.bfloat16)):
        layers = engine.runner.kv.layers.values()
        tensors = [t for layer in layers for t in (layer.keys, layer.values)]
        assert len(tensors) == 2 * num_layers
        assert {t.dtype for t in tensors} == {dtype}
        slots = engine.block_manager.num_blocks * engine.runner.block_size + 1  # + the pad slot
        assert {t.shape[0] for t in tensors} == {slots}


def test_an_int8_cache_holds_int8_rows_and_a_scale_per_slot_and_kv_head() -> None:
    model = family_model("llama")
    auto, int8 = make_engine(model), make_engine(model, kv_cache_dtype="int8")
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    # float32 rows of head_dim * 4 bytes against head_dim int8 bytes and a 4-byte scale
    ratio = int8.block_manager.num_blocks / auto.block_manager.num_blocks
    assert abs(ratio - 4 * head_dim / (head_dim + 4)) < 0.1
    answers(int8, [list(range(1, 41))])
    slots = int8.block_manager.num_blocks * int8.runner.block_size + 1
    kv_heads = model.config.num_key_value_heads
    for layer in int8.runner.kv.layers.values():
        assert layer.keys.dtype == layer.values.dtype == torch.int8
        assert layer.keys.shape == (slots, kv_heads, head_dim)
        assert layer.key_scales is not None and layer.value_scales is not None
        assert layer.key_scales.shape == layer.value_scales.shape == (slots, kv_heads)


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
@pytest.mark.parametrize("family", ["llama", "mistral", "gpt_oss", "gemma2"])
def test_both_decode_paths_agree_with_generate_on_long_prompts(
    family: str, cache_dtype: str
) -> None:
    model = family_model(family)
    batch = long_prompts(seed=len(family))
    expected = [hf_greedy(model, p, NUM_TOKENS) for p in batch]  # before the engine plugs in
    by_mode: dict[str, list[list[int]]] = {}
    try:
        for mode in ("kernel", "gather"):
            engine = make_engine(
                model, decode_attention=mode, kv_cache_dtype=cache_dtype, **SMALL_CHUNKS
            )
            verify_engine(engine.runner, max_model_len=256)  # close enough to load
            by_mode[mode], calls = answers_and_kernel_calls(engine, batch)
            assert calls > 0 if mode == "kernel" else calls == 0, (mode, calls)
    finally:
        decode_kernel.configure("auto")
    for got in by_mode.values():
        assert_close_to(got, expected)
    assert_close_to(by_mode["gather"], by_mode["kernel"])


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_int8_weights_with_a_smaller_cache_agree_with_generate(cache_dtype: str) -> None:
    model = family_model("mistral")
    quantize_int8(model, reduce_range=False)
    batch = long_prompts(seed=3)
    expected = [hf_greedy(model, p, NUM_TOKENS) for p in batch]
    engine = make_engine(model, quantization="int8", kv_cache_dtype=cache_dtype, **SMALL_CHUNKS)
    verify_engine(engine.runner, max_model_len=256)
    assert_close_to(answers(engine, batch), expected)


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_prefix_caching_reuses_blocks_of_a_smaller_cache(cache_dtype: str) -> None:
    model = family_model("llama")
    engine = make_engine(model, kv_cache_dtype=cache_dtype, **SMALL_CHUNKS)
    prompt = long_prompts(seed=5)[1]
    first = one(engine, "a", prompt)
    second = one(engine, "b", prompt)
    assert (first[-1].num_cached_tokens, second[-1].num_cached_tokens) == (0, 52)
    assert output_ids(second) == output_ids(first)  # the same rounded keys and values


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_drafts_are_verified_over_a_smaller_cache(cache_dtype: str) -> None:
    model = family_model("gpt_oss")
    prompt = [5, 6, 7, 8, 9, 10, 11, 12] * 5
    settings = dict(kv_cache_dtype=cache_dtype, **SMALL_CHUNKS)
    plain = output_ids(one(make_engine(model, **settings), "p", prompt, 24))
    ngram = SpeculativeConfig(method="ngram", num_tokens=4, max_running=8)
    drafted = one(make_engine(model, speculative=ngram, **settings), "d", prompt, 24)
    predicted = one(make_engine(model, **settings), "q", prompt, 24, prediction=plain)
    assert agreement(output_ids(drafted), plain) >= AGREEMENT
    assert agreement(output_ids(predicted), plain) >= AGREEMENT
    assert predicted[-1].num_accepted_prediction_tokens > 0
    assert len(predicted) < 24  # accepted drafts came several per step


def test_a_kv_cache_dtype_other_than_auto_bfloat16_or_int8_is_refused() -> None:
    with pytest.raises(ValueError, match=r"kv_cache_dtype must be auto .*, bfloat16 or int8, not"):
        EngineConfig(kv_cache_dtype="fp8")  # type: ignore[arg-type]


def test_the_default_cache_is_the_models_dtype() -> None:
    model = family_model("llama").to(torch.bfloat16)
    engine = make_engine(model)
    answers(engine, [list(range(1, 9))])
    assert {layer.keys.dtype for layer in engine.runner.kv.layers.values()} == {torch.bfloat16}
    assert EngineConfig().kv_cache_dtype == "auto"


@pytest.mark.slow
@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_serve_with_a_smaller_kv_cache_answers_chat(
    tiny_chat_path: Path, llmserve_home: Path, cache_dtype: str
) -> None:
    command = [sys.executable, "-m", "llmserve", "serve", "--model", str(tiny_chat_path)]
    command += ["--port", "0", "--kv-cache-dtype", cache_dtype]
    env = {**os.environ, "LLMSERVE_HOME": str(llmserve_home)}
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            banner = [process.stdout.readline() for _ in range(6)]  # printed at once
            match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", banner[0])
            assert match, f"no URL in {banner[0]!r}"
            assert f", kv cache {cache_dtype}, " in banner[-1], banner
            with openai.OpenAI(base_url=match.group(1), api_key="unused", max_retries=0) as client:
                reply = client.chat.completions.create(
                    model=str(tiny_chat_path),
                    messages=[{"role": "user", "content": "Hello!"}],
                    max_tokens=8,
                    temperature=0,
                )
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content

"""The compiled decode kernel against the gather path, on random paged caches.

Every case builds a cache of random blocks, hands each decode a ragged context scattered over
non-consecutive blocks (padded with the pad slot, as the model runner does), and compares the
kernel's output with the gather + SDPA reference path.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from llmserve.engine import attention, decode_kernel
from llmserve.engine.attention import KVCache, LayerCache, LayerOptions, PagedBatch, quantize_rows
from llmserve.types import GenerateOutput, GenerateRequest

from .conftest import greedy, hf_greedy, make_engine, output_ids, run_all, tiny_model

BLOCK = 16


@pytest.fixture(scope="module")
def kernel_on() -> None:
    decode_kernel.configure("auto")
    if decode_kernel.kernel() is None:
        pytest.fail("the decode kernel did not build on this machine (see the log line)")


def paged_batch(lengths: list[int], kv_heads: int, head_dim: int, dtype: torch.dtype) -> PagedBatch:
    """Random keys/values in every slot; each decode's blocks picked at random from the pool."""
    num_blocks = sum(-(-n // BLOCK) for n in lengths) + 3
    kv = KVCache(num_slots=num_blocks * BLOCK, dtype=dtype)
    shape = (num_blocks * BLOCK + 1, kv_heads, head_dim)
    cache = kv.layer(0, torch.empty(1, kv_heads, 1, head_dim))
    every_slot = torch.arange(shape[0])
    cache.write(every_slot, torch.randn(shape), torch.randn(shape))
    cache.write(every_slot[-1:], torch.zeros(1, *shape[1:]), torch.zeros(1, *shape[1:]))
    order = torch.randperm(num_blocks)
    rows, used = [], 0
    for n in lengths:
        blocks = order[used : used + -(-n // BLOCK)]
        used += len(blocks)
        positions = torch.arange(n)
        rows.append(blocks[positions // BLOCK] * BLOCK + positions % BLOCK)
    slots = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=kv.pad_slot)
    return PagedBatch(
        kv=kv,
        slot_mapping=torch.zeros(0, dtype=torch.long),
        num_decodes=len(lengths),
        decode_slots=slots,
        decode_lengths=torch.tensor(lengths, dtype=torch.long),
        prefills=(),
    )


CASES = {
    "plain MHA": dict(heads=4, kv_heads=4, window=None, softcap=None, sinks=False),
    "GQA 3 groups": dict(heads=9, kv_heads=3, window=None, softcap=None, sinks=False),
    "sliding window": dict(heads=8, kv_heads=2, window=20, softcap=None, sinks=False),
    "softcap": dict(heads=8, kv_heads=2, window=None, softcap=5.0, sinks=False),
    "sinks + window": dict(heads=8, kv_heads=2, window=7, softcap=None, sinks=True),
    "everything": dict(heads=6, kv_heads=1, window=33, softcap=3.0, sinks=True),
    "head size 128": dict(heads=4, kv_heads=2, window=None, softcap=None, sinks=False, d=128),
    "head size 80": dict(heads=4, kv_heads=2, window=None, softcap=2.0, sinks=True, d=80),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_equals_gather_path(kernel_on: None, case: str, dtype: torch.dtype) -> None:
    torch.manual_seed(hash(case) % 1000)
    spec = CASES[case]
    # 300 and 529 cross the kernel's 256-position spans (and its two tiles in flight end mid-span)
    head_dim, lengths = spec.get("d", 64), [1, 5, 16, 17, 40, 100, 3, 64, 300, 529]
    batch = paged_batch(lengths, spec["kv_heads"], head_dim, dtype)
    query_dtype = torch.float32 if dtype == torch.int8 else dtype
    query = torch.randn(1, spec["heads"], len(lengths), head_dim).to(query_dtype)
    options = LayerOptions(
        scaling=head_dim**-0.5 * 1.7,
        window=spec["window"],
        softcap=spec["softcap"],
        sinks=torch.randn(spec["heads"]) if spec["sinks"] else None,
    )
    cache = batch.kv.layers[0]
    got = attention._decode_in_place(query, cache, batch, options)
    assert got is not None, "the kernel path was not taken"
    ref = attention._decode_gathered(query.float(), cache, batch, options)
    assert got.shape == ref.shape == (len(lengths), spec["heads"], head_dim)
    # bf16: the output is rounded to bf16; int8: the kernel rounds each query head to int8 too
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.int8: 5e-2}[dtype]
    torch.testing.assert_close(got.float(), ref, atol=tolerance, rtol=tolerance)


# Fewer sequences than threads: each long context's positions are split between the threads
# (from 256 attended positions), each part's sums combined at the end.
SPLIT_CASES = {
    "one GQA sequence": dict(heads=9, kv_heads=3, d=64, window=None, lengths=[1000]),
    "one sequence, head size 128": dict(heads=4, kv_heads=2, d=128, window=None, lengths=[529]),
    "one windowed sequence": dict(heads=8, kv_heads=2, d=64, window=300, lengths=[777]),
    "a short window: no split": dict(heads=8, kv_heads=2, d=64, window=100, lengths=[777]),
    "two sequences, four threads": dict(heads=8, kv_heads=2, d=64, window=None, lengths=[40, 600]),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("case", list(SPLIT_CASES))
def test_a_split_context_equals_the_gather_path(
    kernel_on: None, case: str, dtype: torch.dtype
) -> None:
    torch.manual_seed(zlib.crc32(case.encode()))
    spec: dict[str, Any] = SPLIT_CASES[case]
    lengths, head_dim = spec["lengths"], spec["d"]
    batch = paged_batch(lengths, spec["kv_heads"], head_dim, dtype)
    query_dtype = torch.float32 if dtype == torch.int8 else dtype
    # Float caches: a query that picks out a few keys, so one part's max lies far above the
    # other's. Int8 caches round the query to int8 as well, an error such a peak would magnify.
    peak = 1.0 if dtype == torch.int8 else 4.0
    query = peak * torch.randn(1, spec["heads"], len(lengths), head_dim).to(query_dtype)
    options = LayerOptions(scaling=head_dim**-0.5, window=spec["window"], softcap=None, sinks=None)
    cache = batch.kv.layers[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(4 if len(lengths) > 1 else 2)
    try:
        got = attention._decode_in_place(query, cache, batch, options)
    finally:
        torch.set_num_threads(threads)
    assert got is not None, "the kernel path was not taken"
    ref = attention._decode_gathered(query.float(), cache, batch, options)
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.int8: 5e-2}[dtype]
    torch.testing.assert_close(got.float(), ref, atol=tolerance, rtol=tolerance)


def empty_int8_cache(num_slots: int) -> LayerCache:
    return LayerCache(
        torch.zeros(num_slots, 3, 64, dtype=torch.int8),
        torch.zeros(num_slots, 3, 64, dtype=torch.int8),
        torch.zeros(num_slots, 3),
        torch.zeros(num_slots, 3),
    )


def test_the_kernels_int8_store_equals_the_torch_one(kernel_on: None) -> None:
    rows = torch.randn(40, 3, 64) * torch.rand(40, 3, 1) * 30
    rows[3, 2] = 0
    rows[5, 0, 7] = 0.5 * rows[5, 0].abs().max() / 127  # a tie: both round half to even
    slots = torch.randperm(50)[:40]
    by_kernel, by_torch = empty_int8_cache(50), empty_int8_cache(50)
    by_kernel.write(slots, rows, rows * 2)
    decode_kernel.configure("gather")
    try:
        by_torch.write(slots, rows, rows * 2)
    finally:
        decode_kernel.configure("auto")
    for got, want in zip(
        (by_kernel.keys, by_kernel.values, by_kernel.key_scales, by_kernel.value_scales),
        (by_torch.keys, by_torch.values, by_torch.key_scales, by_torch.value_scales),
        strict=True,
    ):
        assert torch.equal(got, want)


def test_int8_rows_round_trip_within_half_a_step() -> None:
    rows = torch.randn(50, 3, 64) * torch.rand(50, 3, 1) * 10
    rows[7, 1] = 0  # an all-zero row keeps scale 1, not a division by zero
    quantized, scales = quantize_rows(rows)
    assert quantized.dtype == torch.int8 and scales.shape == (50, 3)
    assert int(quantized.abs().amax()) == 127 and float(scales[7, 1]) == 1.0
    back = quantized.float() * scales.unsqueeze(-1)
    assert bool(((back - rows).abs() <= scales.unsqueeze(-1) / 2 + 1e-6).all())
    cache = empty_int8_cache(60)
    slots = torch.randperm(60)[:50]
    cache.write(slots, rows, -rows)
    torch.testing.assert_close(cache.read_keys(slots, torch.float32), back)
    torch.testing.assert_close(
        cache.read_values(slots.view(5, 10), torch.float32), -back.view(5, 10, 3, 64)
    )


def test_gather_mode_turns_the_kernel_off() -> None:
    decode_kernel.configure("gather")
    try:
        assert decode_kernel.kernel() is None
    finally:
        decode_kernel.configure("auto")
    assert decode_kernel.kernel() is not None


def test_float16_cache_falls_back_to_gather(kernel_on: None) -> None:
    batch = paged_batch([3, 9], 2, 16, torch.float16)
    query = torch.randn(1, 4, 2, 16).to(torch.float16)
    options = LayerOptions(scaling=0.25, window=None, softcap=None, sinks=None)
    cache = batch.kv.layers[0]
    assert attention._decode_in_place(query, cache, batch, options) is None
    assert attention._decode(query, cache, batch, options).shape == (2, 4, 16)


def kernel_calls_while(run: Callable[[], object]) -> int:
    """How many times the compiled decode kernel ran during `run()`."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return sum(e.count for e in prof.key_averages() if e.key == "llmserve::decode_attention")


@pytest.mark.parametrize("mode", ["kernel", "gather"])
def test_engine_greedy_equals_generate_in_either_mode(mode: str) -> None:
    model = tiny_model("mistral")  # sliding window 4096 > context: the full-attention branch too
    engine = make_engine(model, max_num_batched_tokens=64, decode_attention=mode)
    batch = [[(7 * i + 3 * j) % 290 + 5 for j in range(20 + 9 * i)] for i in range(3)]
    requests = [GenerateRequest(f"r{i}", tuple(p), greedy(10)) for i, p in enumerate(batch)]
    results: dict[tuple[str, int], list[GenerateOutput]] = {}
    calls = kernel_calls_while(lambda: results.update(run_all(engine, requests)))
    decode_kernel.configure("auto")
    for i, prompt in enumerate(batch):
        assert output_ids(results[(f"r{i}", 0)]) == hf_greedy(model, prompt, 10)
    layers = model.config.num_hidden_layers
    assert calls >= 9 * layers if mode == "kernel" else calls == 0


def test_a_failed_build_falls_back_to_gather_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(decode_kernel, "FLAGS", ["-fno-such-flag-llmserve"])  # g++ refuses it
    monkeypatch.setattr(decode_kernel, "_state", {"mode": "auto", "module": None, "tried": False})
    with caplog.at_level(logging.INFO, logger=decode_kernel.__name__):
        decode_kernel.configure("kernel")
        assert decode_kernel.kernel() is None
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].name == decode_kernel.__name__
    assert "using the gather path" in lines[0].getMessage()
    batch = paged_batch([3, 9], 2, 16, torch.float32)
    query = torch.randn(1, 4, 2, 16)
    options = LayerOptions(scaling=0.25, window=None, softcap=None, sinks=None)
    out = attention._decode(query, batch.kv.layers[0], batch, options)
    assert out.shape == (2, 4, 16)

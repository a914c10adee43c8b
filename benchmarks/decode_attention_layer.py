"""One layer's decode attention, in-place kernel against gather + SDPA, on a random paged cache.

SmolLM2-135M's attention shape (9 query heads, 3 KV heads, head size 64), 32 decodes, contexts
of 48 and 1,024 tokens scattered over shuffled 16-slot blocks. Prints the best and median time
per call and the bytes of keys and values each call must read, as GB/s. Calls cycle through
`--layers` caches (default 30, the model's layer count), so that, as in a real step, each call
reads its cache from memory rather than from the CPU's last-level cache.

    PYTHONPATH=src .venv/bin/python benchmarks/decode_attention_layer.py
    PYTHONPATH=src .venv/bin/python benchmarks/decode_attention_layer.py --kv-cache-dtype int8
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from llmserve.engine import attention, decode_kernel
from llmserve.engine.attention import KVCache, LayerOptions, PagedBatch

BLOCK, HEADS, KV_HEADS, HEAD_DIM = 16, 9, 3, 64


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}


def random_batch(streams: int, ctx: int, dtype: torch.dtype, layers: int) -> PagedBatch:
    blocks = -(-ctx // BLOCK)
    num_slots = streams * blocks * BLOCK
    kv = KVCache(num_slots=num_slots, dtype=dtype)
    shape = (num_slots + 1, KV_HEADS, HEAD_DIM)
    for layer in range(layers):
        cache = kv.layer(layer, torch.empty(1, KV_HEADS, 1, HEAD_DIM))
        cache.write(torch.arange(num_slots + 1), torch.randn(shape), torch.randn(shape))
    table = torch.randperm(streams * blocks).view(streams, blocks)
    positions = torch.arange(ctx)
    slots = table[:, positions // BLOCK] * BLOCK + positions % BLOCK
    return PagedBatch(
        kv=kv,
        slot_mapping=torch.zeros(0, dtype=torch.long),
        num_decodes=streams,
        decode_slots=slots,
        decode_lengths=torch.full((streams,), ctx, dtype=torch.long),
        prefills=(),
    )


def timed(fn: Callable[..., Any], calls: list[tuple[Any, ...]], repeats: int) -> list[float]:
    """Seconds per call, one layer a call, the layers taken in turn."""
    fn(*calls[0])
    times = []
    for i in range(repeats * len(calls)):
        start = time.perf_counter()
        fn(*calls[i % len(calls)])
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--contexts", type=int, nargs="+", default=[48, 1024])
    parser.add_argument("--repeats", type=int, default=10, help="sweeps over the layers")
    parser.add_argument("--layers", type=int, default=30, help="caches the calls cycle through")
    parser.add_argument("--kv-cache-dtype", choices=list(DTYPES), default="float32")
    args = parser.parse_args()
    dtype = DTYPES[args.kv_cache_dtype]
    decode_kernel.configure("kernel")
    torch.manual_seed(0)
    options = LayerOptions(scaling=HEAD_DIM**-0.5, window=None, softcap=None, sinks=None)
    print(
        f"torch threads: {torch.get_num_threads()}; KV cache {args.kv_cache_dtype}; "
        f"{args.layers} layers"
    )
    print("| context | path | best ms | median ms | KV GB/s (best) |")
    print("|---:|---|---:|---:|---:|")
    for ctx in args.contexts:
        batch = random_batch(args.streams, ctx, dtype, args.layers)
        query = torch.randn(1, HEADS, args.streams, HEAD_DIM)
        kv_bytes = 2 * args.streams * ctx * KV_HEADS * HEAD_DIM * dtype.itemsize
        for name, path in (
            ("kernel", attention._decode_in_place),
            ("gather", attention._decode_gathered),
        ):
            calls = [(query, cache, batch, options) for cache in batch.kv.layers.values()]
            times = timed(path, calls, args.repeats)
            best = min(times)
            print(
                f"| {ctx} | {name} | {best * 1e3:.2f} | {statistics.median(times) * 1e3:.2f} "
                f"| {kv_bytes / best / 1e9:.1f} |"
            )


if __name__ == "__main__":
    main()

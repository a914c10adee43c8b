"""Profile one decode step of 32 streams with long prompts: which ops run per layer.

The SmolLM2-135M-shaped random Llama (engine_cpu.py's shape) in the engine, no HTTP. The streams
are prefilled, a few decode steps warm up, then one pure-decode step runs under torch.profiler.
Prints the op table (count, self CPU time) and the count of gather-like ops (index_select,
gather, advanced indexing) next to the layer count: the in-place kernel path has no per-layer
gather of the cache (the one index_select left is the token embedding).

    PYTHONPATH=src .venv/bin/python benchmarks/decode_profile.py --streams 32 --prompt-len 1000
"""

from __future__ import annotations

import argparse
from typing import Any, cast

import torch
from decode_context import Words
from engine_cpu import SHAPE
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, LlamaConfig

from llmserve.config import EngineConfig
from llmserve.engine.llm_engine import LLMEngine
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest

GATHER_OPS = ("aten::index_select", "aten::gather", "aten::index", "aten::take")


def decoding_engine(model: Any, streams: int, prompt_len: int, mode: str) -> LLMEngine:
    """An engine whose `streams` sequences are all past their prefill."""
    config = EngineConfig(
        max_num_seqs=streams, max_num_batched_tokens=1024, decode_attention=cast(Any, mode)
    )
    engine = LLMEngine(
        model, Words(), config, max_model_len=2048, eos_token_ids=frozenset(), num_blocks=4096
    )
    prefix = [(37 * i) % 40000 + 3 for i in range(prompt_len - 1)]
    sampling = SamplingParams(max_tokens=64, temperature=0.0)
    for s in range(streams):
        engine.add_request(GenerateRequest(f"s{s}", (*prefix, 100 + s), sampling))
    started: set[str] = set()
    while len(started) < streams:
        started |= {out.request_id for out in engine.step()}
    for _ in range(2):
        engine.step()
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=1000)
    parser.add_argument("--decode-attention", default="auto", choices=["auto", "kernel", "gather"])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SHAPE), dtype=torch.float32).eval()
    engine = decoding_engine(model, args.streams, args.prompt_len, args.decode_attention)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        engine.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    layers = SHAPE["num_hidden_layers"]
    calls = sum(e.count for e in prof.key_averages() if e.key == "llmserve::decode_attention")
    print(f"decode step, {args.streams} streams x {args.prompt_len}-token prompts, {layers} layers")
    print(f"  llmserve::decode_attention calls: {calls}; gather-like ops (calls, inputs):")
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in GATHER_OPS:
            print(
                f"    {e.key} x{e.count}: {e.input_shapes}, {e.self_cpu_time_total / 1000:.2f} ms"
            )


if __name__ == "__main__":
    main()

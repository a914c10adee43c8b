"""Decode tokens/s at N streams with short vs long prompts: what reading the cache costs.

The SmolLM2-135M-shaped random Llama (benchmarks/engine_cpu.py's shape), the engine itself, no
HTTP. The streams share their prompt but for the last token, so prefix caching makes the long
prefill cheap while every stream's decode still attends over its whole context. Prints a table,
writes benchmarks/results/decode_context.json and docs/decode_context.png.

    PYTHONPATH=src .venv/bin/python benchmarks/decode_context.py --streams 32 --prompt-lens 32 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from engine_cpu import SHAPE
from transformers import AutoModelForCausalLM, LlamaConfig

from llmserve.config import EngineConfig
from llmserve.engine.llm_engine import LLMEngine
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest

ROOT = Path(__file__).resolve().parent.parent


class Words:
    def decode(self, token_ids: Any) -> str:
        return " ".join(f"w{i}" for i in token_ids)


def decode_rate(
    model: Any,
    streams: int,
    prompt_len: int,
    decode_tokens: int,
    mode: Any = "auto",
    kv_cache_dtype: Any = "auto",
) -> float:
    """Decode tokens/s once every stream has its first token, over `decode_tokens` steps."""
    config = EngineConfig(
        max_num_seqs=streams,
        max_num_batched_tokens=1024,
        decode_attention=mode,
        kv_cache_dtype=kv_cache_dtype,
    )
    engine = LLMEngine(
        model, Words(), config, max_model_len=2048, eos_token_ids=frozenset(), num_blocks=4096
    )
    prefix = [(37 * i) % 40000 + 3 for i in range(prompt_len - 1)]
    sampling = SamplingParams(max_tokens=decode_tokens + 1, temperature=0.0)
    for s in range(streams):
        engine.add_request(GenerateRequest(f"s{s}", (*prefix, 100 + s), sampling))
    started: set[str] = set()
    while len(started) < streams:
        started |= {out.request_id for out in engine.step()}
    begin, produced = time.perf_counter(), 0
    while engine.has_unfinished_requests():
        produced += sum(len(out.token_ids) for out in engine.step())
    return produced / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--prompt-lens", type=int, nargs="+", default=[32, 1000])
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--decode-attention", default="auto", choices=["auto", "kernel", "gather"])
    parser.add_argument("--kv-cache-dtype", default="auto", choices=["auto", "bfloat16", "int8"])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SHAPE), dtype=torch.float32).eval()
    rates = {
        n: decode_rate(
            model, args.streams, n, args.decode_tokens, args.decode_attention, args.kv_cache_dtype
        )
        for n in args.prompt_lens
    }
    base = rates[min(rates)]
    print(f"KV cache {args.kv_cache_dtype}, decode attention {args.decode_attention}")
    print(f"| prompt tokens | streams | decode tokens/s | vs {min(rates)}-token prompts |")
    print("|---:|---:|---:|---:|")
    for n, rate in rates.items():
        print(f"| {n} | {args.streams} | {rate:.1f} | {rate / base:.2f} |")
    out = ROOT / "benchmarks" / "results" / "decode_context.json"
    out.write_text(json.dumps({"streams": args.streams, "rates": rates}, indent=1))
    plot(rates, args.streams)


def plot(rates: dict[int, float], streams: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([str(n) for n in rates], list(rates.values()))
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("decode tokens/s")
    ax.set_title(f"llmserve decode, {streams} streams, SmolLM2-135M shape")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "decode_context.png", dpi=100)


if __name__ == "__main__":
    main()

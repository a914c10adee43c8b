"""Where one batch-1 decode step's time goes: torch.profiler over the engine's own step.

    PYTHONPATH=src python benchmarks/profile_step.py                 # float32
    PYTHONPATH=src python benchmarks/profile_step.py --quantization int8 --threads 1

The SmolLM2-135M-shaped random model of engine_cpu.py, one sequence with a 32-token prompt,
warmed by 16 decode steps; then 20 steps are profiled. Prints the wall time per step, the share
of it the profiler attributes to operators (the rest is Python and dispatch between them), and
the operators by self CPU time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from engine_cpu import build_model
from transformers import AutoModelForCausalLM

from llmserve.config import EngineConfig
from llmserve.engine.llm_engine import LLMEngine
from llmserve.engine.quantization import quantize_int8
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest


class Ids:
    def decode(self, token_ids: list[int]) -> str:
        return " ".join(map(str, token_ids))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quantization", default="none", choices=["none", "int8"])
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "llmserve")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(build_model(args.home), dtype=torch.float32)
    model.eval()
    if args.quantization == "int8":
        quantize_int8(model, reduce_range=False)
    config = EngineConfig(kv_cache_memory_mb=64, quantization=args.quantization)  # type: ignore[arg-type]
    engine = LLMEngine(model, Ids(), config, max_model_len=2048, eos_token_ids=frozenset())
    params = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
    engine.add_request(GenerateRequest("r", tuple(range(3, 35)), params))
    for _ in range(17):
        engine.step()
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            engine.step()
    wall = (time.perf_counter() - start) / 20
    plain_start = time.perf_counter()
    for _ in range(20):
        engine.step()
    plain = (time.perf_counter() - plain_start) / 20
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events) / 20 / 1e6
    print(f"step: {plain * 1e3:.1f} ms unprofiled, {wall * 1e3:.1f} ms profiled; operators' "
          f"self time {total_self * 1e3:.1f} ms per step ({len(events)} kinds)")  # fmt: skip
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


if __name__ == "__main__":
    main()

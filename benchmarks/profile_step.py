"""Where one batch-1 decode step's time goes: torch.profiler over the engine's own step.

    PYTHONPATH=src python benchmarks/profile_step.py                 # float32
    PYTHONPATH=src python benchmarks/profile_step.py --quantization int8 --threads 1
    PYTHONPATH=src python benchmarks/profile_step.py --quantization int8 --lean-decode off

The SmolLM2-135M-shaped random model of engine_cpu.py, one sequence with a 32-token prompt
(`--prompt-len` sets another), warmed by 16 decode steps; then 20 steps are profiled. Prints the
wall time per step, the share of it the profiler attributes to operators (the rest is Python and
dispatch between them), and the operators by self CPU time. With int8 weights the engine takes the
lean decode step (`engine.lean_decode`, default auto): then the native step's own phases are printed
too, timed on its first thread over 100 unprofiled steps, with the bytes of weights a step reads per
millisecond of its matrices.
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
    parser.add_argument("--lean-decode", default="auto", choices=["auto", "on", "off"])
    parser.add_argument(
        "--prompt-len", type=int, default=32, help="the sequence's prompt (its context) in tokens"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(build_model(args.home), dtype=torch.float32)
    model.eval()
    if args.quantization == "int8":
        quantize_int8(model, reduce_range=False)
    config = EngineConfig(
        kv_cache_memory_mb=512,
        quantization=args.quantization,
        lean_decode=args.lean_decode,
    )
    engine = LLMEngine(model, Ids(), config, max_model_len=4096, eos_token_ids=frozenset())
    params = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
    prompt = tuple(3 + i % 40_000 for i in range(args.prompt_len))
    engine.add_request(GenerateRequest("r", prompt, params))
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
    if engine.runner.lean is not None:
        print_lean_phases(engine)


def print_lean_phases(engine: LLMEngine) -> None:
    """The native step's phases per step, against the whole engine step's wall time."""
    lean = engine.runner.lean
    assert lean is not None
    lean.phase_times()  # drop what the warm-up and the profiled steps summed
    start = time.perf_counter()
    for _ in range(100):
        engine.step()
    wall = (time.perf_counter() - start) / 100
    times = lean.phase_times()
    steps = times.pop("steps")
    native = sum(times.values()) / steps
    matrices = native - times["attention"] / steps
    print(f"\nlean step, per engine step of {wall * 1e3:.2f} ms (100 steps):")
    print("| phase | ms | share of the engine step |\n| --- | ---: | ---: |")
    for name, seconds in times.items():
        print(f"| {name} | {seconds / steps * 1e3:.3f} | {seconds / steps / wall:.0%} |")
    print(f"| native step, all phases | {native * 1e3:.3f} | {native / wall:.0%} |")
    print(f"| the engine's Python around it | {(wall - native) * 1e3:.3f} | "
          f"{(wall - native) / wall:.0%} |")  # fmt: skip
    print(f"\nweights: {lean.weight_bytes / 1e6:.0f} MB a step, read at "
          f"{lean.weight_bytes / matrices / 1e9:.1f} GB/s over the matrices' time")  # fmt: skip


if __name__ == "__main__":
    main()

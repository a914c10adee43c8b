"""One stream editing a ~400-token file: without drafts, with a prediction, with n-gram lookup.

    python benchmarks/edit_predict.py                # 2 interleaved rounds, 400-token answers
    python benchmarks/edit_predict.py --rounds 1 --skip-llama-server
    python benchmarks/edit_predict.py --quantization int8   # int8 weights: the lean decode step

The model is the random SmolLM2-135M-shaped Llama of engine_cpu.py, so it cannot edit a file:
its own greedy answer to a 400-token "file" prompt plays the edited file, and the prediction
is that answer with 10 % of its tokens edited (a substituted span, a deleted span, an inserted
span and another substitution, 10 tokens each), as the original file of an edit would differ
from its result. Methods, all greedy, one stream, in process (LocalBackend, as engine_cpu.py):
  plain              no drafts
  predict_equal      `prediction` = the greedy answer itself
  predict_edit       `prediction` = the answer with 10 % edited
  ngram              engine.speculative {method: ngram, num_tokens: 8}: prompt lookup (the
                     random model's answer does not copy its prompt: only its own repeats help)
and llama-server q8_0 (same weights) plain and with its `--spec-type ngram-simple`, when its
binary is built (benchmarks/llama_server.py). Every answer with drafts is checked equal to the
plain one. Writes benchmarks/results/edit_predict.{md,json} and docs/edit_predict.png (with
--quantization int8: edit_predict_int8.*).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_server
from engine_cpu import RESULTS, ROOT, build_model, kv_cache_mb

FILE_TOKENS = 400
LLMSERVE_METHODS = ("plain", "predict_equal", "predict_edit", "ngram")
LLAMA_METHODS = {
    "llama_server_q8_0": (),
    "llama_server_q8_0_ngram": (
        "--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3",
        "--spec-ngram-simple-size-m", "8",
    ),
}  # fmt: skip


def file_prompt() -> tuple[int, ...]:
    rng = random.Random(0)
    return tuple(rng.randrange(3, 49152) for _ in range(FILE_TOKENS))


def edited(answer: list[int]) -> tuple[int, ...]:
    """`answer` with 10 % of its tokens edited: substituted, deleted, inserted, substituted."""
    rng = random.Random(1)
    n = len(answer)
    span = max(1, n // 40)
    other = [rng.randrange(3, 49152) for _ in range(4 * span)]
    out = list(answer)
    q = n // 5
    out[4 * q : 4 * q + span] = other[:span]  # from the end, so earlier offsets stay put
    out[3 * q : 3 * q] = other[span : 2 * span]
    del out[2 * q : 2 * q + span]
    out[q : q + span] = other[2 * span : 3 * span]
    return tuple(out)


def engine_backend(folder: Path, ngram: bool, quantization: str) -> Any:
    from llmserve.backends.local import LocalBackend
    from llmserve.config import EngineConfig, ModelConfig, SpeculativeConfig

    method = "ngram" if ngram else "none"
    config = EngineConfig(
        kv_cache_memory_mb=kv_cache_mb(1, 2 * FILE_TOKENS + 32),
        speculative=SpeculativeConfig(method=method, num_tokens=8),
        quantization=quantization,  # type: ignore[arg-type]
    )
    return LocalBackend(ModelConfig(name="bench", source=str(folder)), config, folder)


async def timed(backend: Any, request_id: str, prediction: tuple[int, ...]) -> dict[str, Any]:
    from llmserve.sampling import SamplingParams
    from llmserve.types import GenerateRequest

    params = SamplingParams(max_tokens=FILE_TOKENS, temperature=0.0, ignore_eos=True)
    request = GenerateRequest(request_id, file_prompt(), params, prediction_token_ids=prediction)
    start = time.perf_counter()
    first = 0.0
    tokens: list[int] = []
    last = None
    async for output in backend.generate(request):
        if not tokens:
            first = time.perf_counter()
        tokens += output.token_ids
        last = output
    end = time.perf_counter()
    assert last is not None
    return {
        "tokens": tokens,
        "tokens_per_s": len(tokens) / (end - start),
        "decode_tokens_per_s": (len(tokens) - 1) / (end - first),
        "accepted": last.num_accepted_prediction_tokens,
        "rejected": last.num_rejected_prediction_tokens,
    }


async def llmserve_round(folder: Path, index: int, quantization: str) -> dict[str, dict[str, Any]]:
    plain_backend = engine_backend(folder, False, quantization)
    ngram_backend = engine_backend(folder, True, quantization)
    await plain_backend.start()
    await ngram_backend.start()
    try:
        # NOTE: a verify step's shapes (17 tokens) are new to the kernels: warm them up too
        warmup = await timed(plain_backend, f"warmup{index}", ())
        await timed(plain_backend, f"warmup-p{index}", edited(warmup["tokens"]))
        await timed(ngram_backend, f"warmup{index}", ())
        plain = await timed(plain_backend, f"plain{index}", ())
        answer = plain["tokens"]
        results = {
            "plain": plain,
            "predict_equal": await timed(plain_backend, f"eq{index}", tuple(answer)),
            "predict_edit": await timed(plain_backend, f"edit{index}", edited(answer)),
            "ngram": await timed(ngram_backend, f"ngram{index}", ()),
        }
    finally:
        await plain_backend.shutdown()
        await ngram_backend.shutdown()
    for method, result in results.items():
        print(f"  {method}: {result['decode_tokens_per_s']:.1f}", flush=True)
        if result["tokens"] != answer:
            raise AssertionError(f"{method}: the answer differs from the plain greedy answer")
    return results


async def llama_stream(base_url: str, num_tokens: int = FILE_TOKENS) -> dict[str, Any]:
    body = {
        "prompt": list(file_prompt()),
        "n_predict": num_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "cache_prompt": False,
    }
    tokens: list[int] = []
    start = time.perf_counter()
    first = start
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=None) as http,
        http.stream("POST", "/completion", json=body) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            chunk = json.loads(line[6:]) if line.startswith("data: {") else {}
            if chunk.get("tokens"):
                first = first if tokens else time.perf_counter()
                tokens += chunk["tokens"]
    end = time.perf_counter()
    return {
        "tokens_per_s": len(tokens) / (end - start),
        "decode_tokens_per_s": (len(tokens) - 1) / (end - first),
        "num_tokens": len(tokens),
    }


def llama_round(binary: Path, gguf: Path, threads: int) -> dict[str, dict[str, Any]]:
    results = {}
    for method, extra in LLAMA_METHODS.items():
        process, base_url = llama_server.start_llama_server(
            binary, gguf, 1, threads, 2 * FILE_TOKENS + 32, extra
        )
        try:
            asyncio.run(llama_stream(base_url, 16))  # warm-up
            results[method] = asyncio.run(llama_stream(base_url))
            print(f"  {method}: {results[method]['decode_tokens_per_s']:.1f}", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return results


def llama_binary(skip: bool) -> Path | None:
    binary = llama_server.cache_dir() / "llama_cpp_python-0.3.36" / "build" / "bin"
    binary /= "llama-server"
    if skip or not binary.is_file():
        return None  # NOTE: building it takes tens of minutes: this benchmark never does
    return binary


def summary(rounds: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for method in rounds[0]:
        runs = [r[method] for r in rounds if method in r]
        rows.append(
            {
                "method": method,
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
                "decode_tokens_per_s": statistics.median(r["decode_tokens_per_s"] for r in runs),
                "accepted": runs[-1].get("accepted"),
                "rejected": runs[-1].get("rejected"),
            }
        )
    plain = rows[0]["decode_tokens_per_s"]
    for row in rows:
        row["speedup"] = row["decode_tokens_per_s"] / plain
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | tokens/s (end to end) | decode tokens/s | x plain (decode) "
        "| accepted | rejected |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        counts = [str(r[k]) if r[k] is not None else "-" for k in ("accepted", "rejected")]
        lines.append(
            f"| {r['method']} | {r['tokens_per_s']:.1f} | {r['decode_tokens_per_s']:.1f} | "
            f"{r['speedup']:.2f}x | {counts[0]} | {counts[1]} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh([r["method"] for r in rows], [r["decode_tokens_per_s"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("decode tokens/s, one stream (higher is better)")
    ax.set_title(f"Editing a {FILE_TOKENS}-token file, SmolLM2-135M-shaped model, this CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="llama-server threads")
    parser.add_argument("--skip-llama-server", action="store_true")
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "llmserve")
    parser.add_argument(
        "--quantization",
        choices=["none", "int8"],
        default="none",
        help="llmserve's weights (int8: results under edit_predict_int8.*)",
    )
    args = parser.parse_args()
    folder = build_model(args.home)
    binary = llama_binary(args.skip_llama_server)
    cache = llama_server.cache_dir()
    gguf = llama_server.gguf_model(cache, folder, "q8_0") if binary else None
    rounds = []
    for index in range(args.rounds):
        results = asyncio.run(llmserve_round(folder, index, args.quantization))
        if binary is not None and gguf is not None:
            results |= llama_round(binary, gguf, args.threads)
        rounds.append(results)
        name = "edit_predict" + ("_int8" if args.quantization == "int8" else "")
        write(summary(rounds), name)  # after every round: a slow machine still leaves results


def write(rows: list[dict[str, Any]], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(table(rows) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, ROOT / "docs" / f"{name}.png")
    print(table(rows), flush=True)


if __name__ == "__main__":
    main()

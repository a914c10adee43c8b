"""llmserve against llama.cpp's llama-server on this CPU, in one run.

    python benchmarks/vs_llama_cpp.py                      # 3 interleaved rounds, 64 new tokens
    python benchmarks/vs_llama_cpp.py --threads 1                # on a machine shared with others
    python benchmarks/vs_llama_cpp.py --rounds 1 --concurrency 1 8 --skip-prefix
    python benchmarks/vs_llama_cpp.py --prompt-len 32 1000 4000 --concurrency 1 32  # long context
    python benchmarks/vs_llama_cpp.py --kv-cache-dtype bfloat16   # llmserve with a bf16 KV cache
    python benchmarks/vs_llama_cpp.py --kv-cache-dtype int8       # ... or an int8 one

Methods: Hugging Face padded batch, llmserve float32 and int8 in process (like engine_cpu.py),
llmserve int8 behind its HTTP server (`llmserve serve --quantization int8`, streaming
/v1/completions: what a client sees, as with llama-server), and llama-server with the same
model converted to GGUF f32 and q8_0 (built once from the llama-cpp-python sdist into
LLMSERVE_BENCH_CACHE; see llama_server.py). Every method uses --threads threads. A round runs every
(concurrency, method) once; rounds repeat that, so a machine that slows down or speeds up hits
every method alike, and the table reports the median of the rounds. Then the time to first token
of a 1,000-token conversation's second turn, with and without prefix caching.
Writes benchmarks/results/vs_llama_cpp.{md,json} and docs/vs_llama_cpp.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_server
from engine_cpu import (
    RESULTS,
    ROOT,
    _peak_rss_mb,
    _result,
    add_kv_cache_dtype_argument,
    build_model,
    measure,
    prompts,
    warmup_prompt,
)

LLAMA_METHOD_TO_GGUF = {"llama_server_f32": "f32", "llama_server_q8_0": "q8_0"}
METHODS = (
    "hf_padded_batch",
    "llmserve",
    "llmserve_int8",
    "llmserve_http_int8",
    *LLAMA_METHOD_TO_GGUF,
)
FIRST_TURN_TOKENS, NEW_TURN_TOKENS, REPLY_TOKENS = 1000, 50, 64
# NOTE: llama-server may close an idle keep-alive connection just as the client reuses it
# ("Server disconnected without sending a response"): one connection per request.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def measure_llama_server(
    binary: Path, gguf: Path, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One llama-server process with `concurrency` slots, driven by streaming clients."""
    context = args.prompt_len + args.new_tokens + 16
    process, base_url = llama_server.start_llama_server(
        binary, gguf, slots=concurrency, threads=args.threads, context_per_slot=context
    )
    try:
        elapsed, ttfts, itls = asyncio.run(llama_clients(base_url, concurrency, args))
        result = _result(concurrency * args.new_tokens, elapsed, ttfts, itls)
        result["peak_rss_mb"] = _peak_rss_mb(process.pid)
        return result
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure_llama_server_or_none(
    binary: Path, gguf: Path, concurrency: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    """`measure_llama_server`, tried twice; None (left out of the medians) if both fail."""
    for attempt in (1, 2):
        try:
            return measure_llama_server(binary, gguf, concurrency, args)
        except (httpx.HTTPError, RuntimeError) as exc:
            log = llama_server.cache_dir() / "llama-server.log"
            print(f"{gguf.name} c={concurrency} attempt {attempt} failed: {exc!r}; see {log}",
                  file=sys.stderr)  # fmt: skip
    return None


async def llama_clients(
    base_url: str, concurrency: int, args: argparse.Namespace
) -> tuple[float, list[float], list[float]]:
    ttfts: list[float] = []
    itls: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=None, limits=NO_KEEPALIVE) as http:
        warmup = warmup_prompt(args.prompt_len)
        await stream_completion(http, warmup, args.new_tokens, time.perf_counter(), [], [])
        start = time.perf_counter()
        await asyncio.gather(
            *(
                stream_completion(http, prompt, args.new_tokens, start, ttfts, itls)
                for prompt in prompts(concurrency, args.prompt_len)
            )
        )
        return time.perf_counter() - start, ttfts, itls


async def stream_completion(
    http: Any,
    prompt: list[int],
    new_tokens: int,
    start: float,
    ttfts: list[float],
    itls: list[float],
    cache_prompt: bool = False,
) -> list[int]:
    """A greedy completion from token ids via /completion; records TTFT and inter-token gaps."""
    body = {
        "prompt": prompt,
        "n_predict": new_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "cache_prompt": cache_prompt,
    }
    tokens: list[int] = []
    last = start
    async with http.stream("POST", "/completion", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            chunk = json.loads(line[6:]) if line.startswith("data: {") else {}
            if chunk.get("tokens"):
                now = time.perf_counter()
                (itls if tokens else ttfts).append(now - last)
                tokens += chunk["tokens"]
                last = now
    if len(tokens) != new_tokens:
        raise RuntimeError(f"llama-server streamed {len(tokens)} tokens, not {new_tokens}")
    return tokens


def conversation(reply: list[int]) -> tuple[list[int], list[int]]:
    """The first turn's prompt, and the second turn's: history, the reply, a new message."""
    first = prompts(1, FIRST_TURN_TOKENS)[0]
    new_message = [(11 * j) % 700 + 1000 for j in range(NEW_TURN_TOKENS)]
    return first, first + reply + new_message


def run_prefix_child(folder: Path, caching: bool, kv_cache_dtype: str) -> dict[str, Any]:
    """llmserve (in process): TTFT of the first and the second turn, and the cached tokens."""
    from llmserve.backends.local import LocalBackend
    from llmserve.config import EngineConfig, ModelConfig
    from llmserve.sampling import SamplingParams
    from llmserve.types import GenerateRequest

    engine = EngineConfig(
        kv_cache_memory_mb=256,
        enable_prefix_caching=caching,
        kv_cache_dtype=kv_cache_dtype,  # type: ignore[arg-type]
    )
    backend = LocalBackend(ModelConfig(name="bench", source=str(folder)), engine, folder)
    params = SamplingParams(max_tokens=REPLY_TOKENS, temperature=0.0, ignore_eos=True)

    async def turn(request_id: str, prompt: list[int]) -> tuple[float, list[int], int]:
        start, ttft, ids, cached = time.perf_counter(), 0.0, [], 0
        async for out in backend.generate(GenerateRequest(request_id, tuple(prompt), params)):
            ttft = ttft or time.perf_counter() - start
            ids += out.token_ids
            cached = out.num_cached_tokens
        return ttft, ids, cached

    async def main() -> dict[str, Any]:
        await backend.start()
        await turn("warmup", prompts(2, 64)[1])
        first, _ = conversation([])
        ttft_first, reply, _ = await turn("turn1", first)
        ttft_second, _, cached = await turn("turn2", conversation(reply)[1])
        await backend.shutdown()
        return {"ttft_first_ms": 1000 * ttft_first, "ttft_second_ms": 1000 * ttft_second,
                "cached_tokens": cached}  # fmt: skip

    return asyncio.run(main())


def measure_prefix(folder: Path, caching: bool, args: argparse.Namespace) -> dict[str, Any] | None:
    command = [sys.executable, __file__, "--prefix-child", str(folder), "on" if caching else "off"]
    command += ["--kv-cache-dtype", args.kv_cache_dtype]
    timeout = args.timeout
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        print(f"prefix caching={caching} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def measure_llama_prefix(binary: Path, gguf: Path, threads: int) -> dict[str, Any]:
    """llama-server's own prompt cache (one slot, cache_prompt) on the same conversation."""
    context = FIRST_TURN_TOKENS + 2 * REPLY_TOKENS + NEW_TURN_TOKENS + 16
    process, base_url = llama_server.start_llama_server(
        binary, gguf, slots=1, threads=threads, context_per_slot=context
    )

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base_url, timeout=None, limits=NO_KEEPALIVE) as http:
            await stream_completion(
                http, prompts(2, 64)[1], REPLY_TOKENS, time.perf_counter(), [], []
            )
            ttfts: list[float] = []
            first, _ = conversation([])
            reply = await stream_completion(
                http, first, REPLY_TOKENS, time.perf_counter(), ttfts, [], cache_prompt=True
            )
            second = conversation(reply)[1]
            await stream_completion(
                http, second, REPLY_TOKENS, time.perf_counter(), ttfts, [], cache_prompt=True
            )
            return {"ttft_first_ms": 1000 * ttfts[0], "ttft_second_ms": 1000 * ttfts[1]}

    try:
        return asyncio.run(main())
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_rounds(folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (round, concurrency, method) measurement, in the order it ran."""
    cache = llama_server.cache_dir()
    needs_llama = any(m in LLAMA_METHOD_TO_GGUF for m in args.methods)
    binary = llama_server.build_llama_server(cache) if needs_llama else None
    runs = []
    for round_index in range(args.rounds):
        for prompt_len in args.prompt_len:
            one = argparse.Namespace(**{**vars(args), "prompt_len": prompt_len})
            for concurrency in args.concurrency:
                for method in args.methods:
                    if method in LLAMA_METHOD_TO_GGUF and binary is not None:
                        gguf = llama_server.gguf_model(cache, folder, LLAMA_METHOD_TO_GGUF[method])
                        result: dict[str, Any] | None = measure_llama_server_or_none(
                            binary, gguf, concurrency, one
                        )
                    else:
                        result = measure(method, folder, concurrency, one)
                    if result is not None:
                        runs.append({"round": round_index, "method": method,
                                     "prompt_len": prompt_len, "concurrency": concurrency,
                                     **result})  # fmt: skip
                        print(json.dumps(runs[-1]), flush=True)
    return runs


def medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (prompt length, method, concurrency): the median over rounds of each figure."""
    keys = sorted(
        {(r["prompt_len"], r["method"], r["concurrency"]) for r in runs},
        key=lambda k: (k[0], k[2], k[1]),
    )
    rows = []
    for prompt_len, method, concurrency in keys:
        mine = [
            r
            for r in runs
            if (r["prompt_len"], r["method"], r["concurrency"]) == (prompt_len, method, concurrency)
        ]

        def median(get: Any, mine: list[dict[str, Any]] = mine) -> float | None:
            values = [v for v in map(get, mine) if v is not None]
            return statistics.median(values) if values else None

        rows.append({
            "method": method, "prompt_len": prompt_len, "concurrency": concurrency,
            "rounds": len(mine),
            "tokens_per_s": median(lambda r: r["tokens_per_s"]),
            "ttft_p50_ms": median(lambda r: r["ttft_ms"]["p50"]),
            "itl_p50_ms": median(lambda r: r["itl_ms"]["p50"]),
            "steady_decode_tokens_per_s": median(lambda r: r.get("steady_decode_tokens_per_s")),
            "peak_rss_mb": median(lambda r: r["peak_rss_mb"]),
        })  # fmt: skip
    return rows


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| prompt | method | streams | tok/s | TTFT p50 ms | ITL p50 ms | peak RSS MB | rounds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['prompt_len']} | {r['method']} | {r['concurrency']} "
            f"| {fmt(r['tokens_per_s'], 1)} "
            f"| {fmt(r['ttft_p50_ms'])} | {fmt(r['itl_p50_ms'], 1)} | {fmt(r['peak_rss_mb'])} "
            f"| {r['rounds']} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    """llmserve int8's tokens/s (in process, and over HTTP) over llama-server q8_0's."""
    speed = {(r["method"], r["prompt_len"], r["concurrency"]): r["tokens_per_s"] for r in rows}
    lines = []
    for method in ("llmserve_int8", "llmserve_http_int8"):
        parts = []
        for prompt_len, concurrency in sorted({(r["prompt_len"], r["concurrency"]) for r in rows}):
            ours = speed.get((method, prompt_len, concurrency))
            theirs = speed.get(("llama_server_q8_0", prompt_len, concurrency))
            ratio = f"{ours / theirs:.2f}x" if ours and theirs else "-"
            parts.append(f"prompt {prompt_len}, {concurrency} streams: {ratio}")
        lines.append(f"{method} / llama_server_q8_0 tokens/s: " + "; ".join(parts))
    return "\n".join(lines)


def context_ratios(rows: list[dict[str, Any]]) -> str:
    """llmserve int8's steady decode tokens/s per prompt length, over the shortest prompt's.

    Steady: from the moment the last stream got its first token to the moment the first stream
    finished, when every stream decodes and no prefill shares the steps (engine_cpu.py).
    """
    rate = {
        (r["prompt_len"], r["concurrency"]): r["steady_decode_tokens_per_s"]
        for r in rows
        if r["method"] == "llmserve_int8" and r.get("steady_decode_tokens_per_s")
    }
    parts = []
    for (prompt_len, concurrency), value in sorted(rate.items()):
        base = rate[(min(p for p, c in rate if c == concurrency), concurrency)]
        parts.append(
            f"prompt {prompt_len}, {concurrency} streams: {value:.1f} ({value / base:.2f}x)"
        )
    return "llmserve int8 steady decode tokens/s, vs the shortest prompt: " + (
        "; ".join(parts) or "- (no window where every stream decoded: raise --new-tokens)"
    )


def prefix_table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"Second turn of a {FIRST_TURN_TOKENS}-token conversation ({REPLY_TOKENS}-token reply, "
        f"{NEW_TURN_TOKENS}-token new message), median of the rounds:",
        "",
        "| server | TTFT turn 1 ms | TTFT turn 2 ms | turn 2 / turn 1 | cached tokens |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ratio = r["ttft_second_ms"] / r["ttft_first_ms"]
        lines.append(
            f"| {name} | {fmt(r['ttft_first_ms'])} | {fmt(r['ttft_second_ms'])} "
            f"| {ratio:.2f} | {r.get('cached_tokens', '-')} |"
        )
    return "\n".join(lines)


def run_prefix(folder: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Median TTFTs per server over the rounds, interleaved like the throughput runs."""
    runs: dict[str, list[dict[str, Any]]] = {}
    cache = llama_server.cache_dir()
    for _ in range(args.rounds):
        for caching in (True, False):
            result = measure_prefix(folder, caching, args)
            name = f"llmserve fp32, prefix caching {'on' if caching else 'off'}"
            if result is not None:
                runs.setdefault(name, []).append(result)
        if any(m in LLAMA_METHOD_TO_GGUF for m in args.methods):
            binary = llama_server.build_llama_server(cache)
            gguf = llama_server.gguf_model(cache, folder, "f32")
            name = "llama-server f32, cache_prompt"
            runs.setdefault(name, []).append(measure_llama_prefix(binary, gguf, args.threads))
    return {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["prompt_len"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, prompt_len in zip(axes[0], lengths, strict=True):
        for method in METHODS:
            points = [
                (r["concurrency"], r["tokens_per_s"])
                for r in rows
                if r["method"] == method and r["prompt_len"] == prompt_len
            ]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=method)
        ax.set(xscale="log", xlabel="concurrent streams", ylabel="generated tokens/s (median)")
        ax.set_title(f"{prompt_len}-token prompts")
        ax.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        ax.legend(fontsize="small")
    fig.suptitle("SmolLM2-135M-shaped model on this CPU: llmserve vs llama-server")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--prompt-len", type=int, nargs="+", default=[32], help="prompt lengths (tokens)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--threads", type=int, default=None, help="llama-server -t (default: cores)"
    )
    parser.add_argument("--skip-prefix", action="store_true", help="no prefix-caching TTFT run")
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "llmserve")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    add_kv_cache_dtype_argument(parser)
    parser.add_argument("--prefix-child", nargs=2, metavar=("MODEL_DIR", "CACHING"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.prefix_child:
        folder, caching = args.prefix_child
        result = run_prefix_child(Path(folder), caching == "on", args.kv_cache_dtype)
        print("RESULT " + json.dumps(result))
        return
    from llmserve.engine.cpu import default_num_threads, detect_cpu

    cpu = detect_cpu()
    args.threads = args.threads or default_num_threads(cpu)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # llmserve and HF children follow it
    folder = build_model(args.home)
    load = os.getloadavg()
    runs = run_rounds(folder, args)
    rows = medians(runs)
    report = (
        f"CPU: {cpu.summary()}; {args.threads} threads; load average at start "
        f"{load[0]:.1f}. {args.new_tokens} new tokens per request, prompts of "
        f"{', '.join(map(str, args.prompt_len))} tokens, greedy, ignore_eos; "
        f"llmserve KV cache {args.kv_cache_dtype}; "
        f"medians of {args.rounds} interleaved rounds.\n\n"
        f"{table(rows)}\n\n{ratios(rows)}\n\n{context_ratios(rows)}\n"
    )
    prefix = {} if args.skip_prefix else run_prefix(folder, args)
    if prefix:
        report += "\n" + prefix_table(prefix) + "\n"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vs_llama_cpp.md").write_text(report)
    dump = {"cpu": cpu.summary(), "runs": runs, "rows": rows, "prefix": prefix}
    (RESULTS / "vs_llama_cpp.json").write_text(json.dumps(dump, indent=1))
    plot(rows, ROOT / "docs" / "vs_llama_cpp.png")


if __name__ == "__main__":
    main()

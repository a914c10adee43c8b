"""CPU engine benchmark: llmserve's engine against Hugging Face generate paths.

    python benchmarks/engine_cpu.py                  # 128 new tokens, concurrency 1, 8, 32
    python benchmarks/engine_cpu.py --quick          # 32 new tokens
    python benchmarks/engine_cpu.py --new-tokens 64  # what docs/benchmarks.md reports

Builds a random model with SmolLM2-135M's shape (named bench/smol-135m-shaped-random), measures the
fp32 GEMM peak, then runs each method in its own subprocess (so peak memory is per method) and
writes a table (benchmarks/results/engine_cpu.md, .json) and a plot (docs/engine_cpu.png).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODEL_NAME = "bench/smol-135m-shaped-random"
SHAPE = dict(
    hidden_size=576,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    intermediate_size=1536,
    vocab_size=49152,
    max_position_embeddings=8192,  # SmolLM2-135M's context (room for 4,000-token prompts)
    tie_word_embeddings=True,
)
METHODS = (
    "hf_generate",
    "hf_padded_batch",
    "hf_generate_batch",
    "llmserve_http",
    "llmserve",
    "llmserve_int8",
    "llmserve_http_int8",
)


def build_model(home: Path) -> Path:
    """The random SmolLM2-135M-shaped Llama, with a word-level tokenizer over its whole vocab."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    folder = home / "models" / MODEL_NAME
    if (folder / "tokenizer.json").is_file() and _config_matches(folder):
        return folder
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SHAPE), dtype=torch.float32)
    model.save_pretrained(folder)
    word_level_tokenizer(SHAPE["vocab_size"]).save_pretrained(folder)
    return folder


def _config_matches(folder: Path) -> bool:
    """The saved model has today's SHAPE (a cached one from an older SHAPE is rebuilt)."""
    config = json.loads((folder / "config.json").read_text())
    return all(config.get(key) == value for key, value in SHAPE.items())


def kv_cache_mb(concurrency: int, context: int) -> int:
    """KV cache (MB) that holds every stream's whole context at once, at least 256."""
    per_token = 2 * SHAPE["num_hidden_layers"] * SHAPE["num_key_value_heads"] * 4  # fp32 K and V
    per_token *= SHAPE["hidden_size"] // SHAPE["num_attention_heads"]
    return max(256, int(1.1 * concurrency * (context + 16) * per_token / 2**20) + 1)


def word_level_tokenizer(vocab_size: int) -> Any:
    """Token i (i >= 3) is the word `w{i}`: every id the model emits decodes to visible text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def gemm_peak_flops() -> float:
    """fp32 GEMM FLOP/s on this machine now (median of a few 1024^3 matmuls)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 1024**3 / statistics.median(times)


def prompts(num: int, length: int) -> list[list[int]]:
    return [[(7 * i + 13 * j) % 900 + 3 for j in range(length)] for i in range(num)]


def warmup_prompt(length: int) -> list[int]:
    """A prompt no measured request starts with: a warm-up must not fill the prefix cache."""
    return [(7 * 99 + 13 * j) % 900 + 3 for j in range(length)]


class Stamps:
    """A generate() streamer that timestamps each step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def run_hf(
    method: str, folder: Path, concurrency: int, new_tokens: int, prompt_len: int
) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    batch = prompts(concurrency, prompt_len)
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    ttfts: list[float] = []
    itls: list[float] = []
    with torch.inference_mode():  # warm up allocator and kernels, untimed
        model.generate(torch.tensor(batch[:1]), max_new_tokens=2, do_sample=False, pad_token_id=0)
    start = time.perf_counter()
    if method == "hf_generate_batch":  # runs its own thread; fails under inference_mode
        _timed_generate_batch(model, batch, config, start, ttfts, itls)
    with torch.inference_mode():
        if method == "hf_padded_batch":
            _timed_generate(model, torch.tensor(batch), config, start, ttfts, itls)
        elif method == "hf_generate":
            for prompt in batch:  # one at a time, as without batching: later ones queue
                _timed_generate(model, torch.tensor([prompt]), config, start, ttfts, itls)
    return _result(concurrency * new_tokens, time.perf_counter() - start, ttfts, itls)


def _timed_generate_batch(
    model: Any,
    batch: list[list[int]],
    config: Any,
    start: float,
    ttfts: list[float],
    itls: list[float],
) -> None:
    """transformers' own continuous batching, with a KV cache sized like ours (not % of RAM)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    page_size = 16
    tokens = len(batch) * (len(batch[0]) + config.max_new_tokens)
    batching = ContinuousBatchingConfig(
        page_size=page_size,
        num_blocks=2 * tokens // page_size + 8,
        max_batch_tokens=512,
        max_requests_per_batch=32,
    )
    outputs = model.generate_batch(
        inputs=batch,
        generation_config=config,
        continuous_batching_config=batching,
        record_timestamps=True,
        progress_bar=False,
    )
    for output in outputs.values():
        if output.error or len(output.generated_tokens) != config.max_new_tokens:
            raise RuntimeError(f"generate_batch failed: {output.error}")
        stamps = output.timestamps or []
        if stamps:
            ttfts.append(stamps[0] - start)
            itls.extend(b - a for a, b in itertools.pairwise(stamps))


def _timed_generate(
    model: Any, ids: Any, config: Any, start: float, ttfts: list[float], itls: list[float]
) -> None:
    stamps = Stamps()
    model.generate(ids, generation_config=config, attention_mask=ids.ne(-1), streamer=stamps)
    token_times = stamps.times[1:]  # the first put() is the prompt
    ttfts += [token_times[0] - start] * ids.shape[0]
    itls += [b - a for a, b in itertools.pairwise(token_times)]


def run_llmserve(
    folder: Path,
    concurrency: int,
    new_tokens: int,
    prompt_len: int,
    quantization: str = "none",
    kv_cache_dtype: str = "auto",
) -> dict[str, Any]:
    from llmserve.backends.local import LocalBackend
    from llmserve.config import EngineConfig, ModelConfig
    from llmserve.sampling import SamplingParams
    from llmserve.types import GenerateRequest

    engine_config = EngineConfig(
        max_num_seqs=32,
        max_num_batched_tokens=512,
        kv_cache_memory_mb=kv_cache_mb(concurrency, prompt_len + new_tokens),
        quantization=quantization,  # type: ignore[arg-type]
        kv_cache_dtype=kv_cache_dtype,  # type: ignore[arg-type]
    )
    backend = LocalBackend(ModelConfig(name="bench", source=str(folder)), engine_config, folder)
    params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    ttfts: list[float] = []
    itls: list[float] = []
    stamps: list[list[float]] = []  # per stream: when each of its tokens arrived

    async def client(i: int, prompt: list[int], start: float) -> None:
        last, mine = start, []
        stamps.append(mine)
        async for output in backend.generate(GenerateRequest(f"r{i}", tuple(prompt), params)):
            now = time.perf_counter()
            (itls if output.num_output_tokens > 1 else ttfts).append(now - last)
            last = now
            mine.append(now)

    async def main() -> float:
        await backend.start()
        warmup = GenerateRequest("warmup", tuple(warmup_prompt(prompt_len)), params)
        async for _ in backend.generate(warmup):
            pass
        start = time.perf_counter()
        await asyncio.gather(
            *(client(i, p, start) for i, p in enumerate(prompts(concurrency, prompt_len)))
        )
        elapsed = time.perf_counter() - start
        await backend.shutdown()
        return elapsed

    elapsed = asyncio.run(main())
    result = _result(concurrency * new_tokens, elapsed, ttfts, itls)
    result["steady_decode_tokens_per_s"] = steady_decode_rate(stamps)
    return result


def steady_decode_rate(stamps: list[list[float]]) -> float | None:
    """Tokens/s while every stream decodes: from the last first token to the first stream's end.

    Prefill chunks of streams still starting share steps with decodes; this window has none.
    """
    begin, end = max(s[0] for s in stamps), min(s[-1] for s in stamps)
    count = sum(1 for s in stamps for t in s if begin < t <= end)
    return count / (end - begin) if end > begin and count else None


def run_http(
    folder: Path,
    concurrency: int,
    new_tokens: int,
    prompt_len: int,
    quantization: str = "none",
    kv_cache_dtype: str = "auto",
) -> dict[str, Any]:
    """`llmserve serve --model folder` in a subprocess, driven by streaming HTTP clients."""
    import tempfile

    home = tempfile.mkdtemp(prefix="llmserve-bench-")
    command = [sys.executable, "-m", "llmserve", "serve", "--model", str(folder), "--port", "0"]
    command += ["--quantization", quantization, "--kv-cache-dtype", kv_cache_dtype]
    server = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LLMSERVE_HOME": home},
    )
    try:
        base = _wait_for_url(server)
        elapsed, ttfts, itls = asyncio.run(
            _http_clients(base, str(folder), concurrency, new_tokens, prompt_len)
        )
        result = _result(concurrency * new_tokens, elapsed, ttfts, itls)
        result["peak_rss_mb"] = _peak_rss_mb(server.pid)
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_url(server: subprocess.Popen[str]) -> str:
    assert server.stdout is not None
    for line in server.stdout:
        if "serving an OpenAI-compatible API at " in line:
            return line.split(" at ", 1)[1].strip().removesuffix("/v1")
    raise RuntimeError("llmserve serve exited before it listened")


async def _http_clients(
    base: str, model: str, concurrency: int, new_tokens: int, prompt_len: int
) -> tuple[float, list[float], list[float]]:
    import httpx

    ttfts: list[float] = []
    itls: list[float] = []

    async def client(
        http: httpx.AsyncClient, prompt: list[int], start: float, record: bool
    ) -> None:
        body = {
            "model": model,
            "prompt": " ".join(f"w{i}" for i in prompt),
            "max_tokens": new_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
        last, first = start, True
        async with http.stream("POST", f"{base}/v1/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if not choices[0].get("text"):
                    continue
                now = time.perf_counter()
                if record:
                    (ttfts if first else itls).append(now - last)
                last, first = now, False

    async with httpx.AsyncClient(timeout=None) as http:
        await client(http, warmup_prompt(prompt_len), time.perf_counter(), record=False)
        start = time.perf_counter()
        batch = prompts(concurrency, prompt_len)
        await asyncio.gather(*(client(http, p, start, record=True) for p in batch))
        return time.perf_counter() - start, ttfts, itls


def _peak_rss_mb(pid: int) -> float | None:
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _result(
    num_tokens: int, elapsed: float, ttfts: list[float], itls: list[float]
) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float | None:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000 if values else None

    decode_time = elapsed - (statistics.median(ttfts) if ttfts else 0.0)
    return {
        "tokens_per_s": num_tokens / elapsed,
        "decode_tokens_per_s": num_tokens / decode_time if decode_time > 0 else None,
        "ttft_ms": {f"p{q}": pct(ttfts, q / 100) for q in (50, 90, 99)},
        "itl_ms": {f"p{q}": pct(itls, q / 100) for q in (50, 90, 99)},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def flops_per_token() -> float:
    """2 x the weights every decoded token multiplies (projections, MLP, LM head)."""
    h, i, v = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["vocab_size"]
    kv = h * SHAPE["num_key_value_heads"] // SHAPE["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i
    return 2.0 * (SHAPE["num_hidden_layers"] * per_layer + h * v)


def run_child(
    method: str,
    folder: Path,
    concurrency: int,
    new_tokens: int,
    prompt_len: int,
    kv_cache_dtype: str = "auto",
) -> None:
    if method in ("llmserve", "llmserve_int8"):
        quantization = "int8" if method == "llmserve_int8" else "none"
        result = run_llmserve(
            folder, concurrency, new_tokens, prompt_len, quantization, kv_cache_dtype
        )
    elif method in ("llmserve_http", "llmserve_http_int8"):
        quantization = "int8" if method == "llmserve_http_int8" else "none"
        result = run_http(folder, concurrency, new_tokens, prompt_len, quantization, kv_cache_dtype)
    else:
        result = run_hf(method, folder, concurrency, new_tokens, prompt_len)
    print("RESULT " + json.dumps(result))


def measure(
    method: str, folder: Path, concurrency: int, args: argparse.Namespace
) -> dict[str, Any] | None:
    command = [sys.executable, __file__, "--child", method, str(folder), str(concurrency)]
    command += ["--new-tokens", str(args.new_tokens), "--prompt-len", str(args.prompt_len)]
    command += ["--kv-cache-dtype", args.kv_cache_dtype]  # llmserve's methods; HF ignores it
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        print(f"{method} c={concurrency} ran past {args.timeout}s; left out", file=sys.stderr)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        print(f"{method} c={concurrency} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]], peak: float) -> str:
    lines = [
        "| method | conc | tok/s | TTFT p50/p90/p99 ms | ITL p50/p90/p99 ms "
        "| decode % GEMM peak | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        decode = r.get("decode_tokens_per_s")
        share = None if decode is None else 100 * decode * flops_per_token() / peak
        ttft = "/".join(fmt(r["ttft_ms"][k]) for k in ("p50", "p90", "p99"))
        itl = "/".join(fmt(r["itl_ms"][k]) for k in ("p50", "p90", "p99"))
        lines.append(
            f"| {r['method']} | {r['concurrency']} | {fmt(r['tokens_per_s'], 1)} | {ttft} | {itl} "
            f"| {fmt(share, 1)} | {fmt(r['peak_rss_mb'])} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in METHODS:
        points = [(r["concurrency"], r["tokens_per_s"]) for r in rows if r["method"] == method]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=method)
    ax.set(xscale="log", xlabel="concurrent streams", ylabel="generated tokens/s", title=MODEL_NAME)
    ax.set_xticks([1, 8, 32], labels=["1", "8", "32"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def add_kv_cache_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """`--kv-cache-dtype`, passed to every llmserve method (`engine.kv_cache_dtype`)."""
    parser.add_argument(
        "--kv-cache-dtype",
        choices=("auto", "bfloat16", "int8"),
        default="auto",
        help="llmserve's KV cache dtype: auto (the model's), bfloat16 (half the bytes) or int8 "
        "(about a quarter)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 new tokens instead of 128")
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "llmserve")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS[:4])
    parser.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    add_kv_cache_dtype_argument(parser)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "MODEL_DIR", "CONCURRENCY"))
    args = parser.parse_args()
    args.new_tokens = args.new_tokens or (32 if args.quick else 128)
    if args.child:
        method, folder, concurrency = args.child
        run_child(
            method,
            Path(folder),
            int(concurrency),
            args.new_tokens,
            args.prompt_len,
            args.kv_cache_dtype,
        )
        return
    folder = build_model(args.home)
    peak = gemm_peak_flops()
    rows = []
    for concurrency in args.concurrency:
        for method in args.methods:
            if method == "hf_generate" and concurrency > 8:
                continue  # one at a time: throughput does not depend on concurrency
            result = measure(method, folder, concurrency, args)
            if result is not None:
                rows.append({"method": method, "concurrency": concurrency, **result})
                print(table(rows[-1:], peak).splitlines()[-1], flush=True)
    report = (
        f"GEMM fp32 peak: {peak / 1e9:.1f} GFLOP/s, {args.new_tokens} new tokens, "
        f"prompt {args.prompt_len} tokens, greedy, ignore_eos, "
        f"llmserve KV cache {args.kv_cache_dtype}\n\n"
    )
    report += table(rows, peak)
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_cpu.md").write_text(report + "\n")
    (RESULTS / "engine_cpu.json").write_text(
        json.dumps({"gemm_flops": peak, "rows": rows}, indent=1)
    )
    plot(rows, ROOT / "docs" / "engine_cpu.png")


if __name__ == "__main__":
    main()

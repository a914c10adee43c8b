"""Batch interference: interactive TTFT and ITL with and without a large batch running.

    python benchmarks/batch_interference.py                 # built-in tiny-chat on the CPU engine
    python benchmarks/batch_interference.py --backend fake  # the fake model (seconds, no torch)

Starts `llmserve serve --config` as a subprocess, measures streaming chat requests alone, then
submits a batch (default 500 lines) through the Batch API and measures the same interactive
requests while it runs, then waits for the batch and reports its throughput. Writes
benchmarks/results/batch_interference.{md,json}; docs/benchmarks.md quotes the table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "bench-chat"
CONFIG = """
home: {home}
models:
  - {{name: {model}, source: {source}, backend: {backend}, fake_token_delay_s: {delay}}}
engine: {{max_num_seqs: {max_num_seqs}, batch_share: {batch_share}}}
jobs: {{lease_s: 5.0}}
"""


def start_server(args: argparse.Namespace, home: Path) -> tuple[subprocess.Popen[str], str]:
    """A `llmserve serve` process and its root URL."""
    source = "fake" if args.backend == "fake" else "llmserve/tiny-chat"
    delay = 0.01 if args.backend == "fake" else 0.0
    config = home / "llmserve.yaml"
    config.write_text(
        CONFIG.format(
            home=home,
            model=MODEL,
            source=source,
            backend=args.backend,
            delay=delay,
            max_num_seqs=args.max_num_seqs,
            batch_share=args.batch_share,
        )
    )
    env = {**os.environ, "LLMSERVE_HOME": os.environ.get("LLMSERVE_HOME", str(home))}
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", process.stdout.readline())
    if match is None:
        process.kill()
        raise SystemExit("the server did not start")
    return process, match.group(1)


async def one_stream(client: httpx.AsyncClient, root: str, max_tokens: int) -> dict[str, Any]:
    """One streaming chat request: its TTFT and the gaps between its tokens, in ms."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me a story about a cat."}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    started = time.perf_counter()
    arrivals = []
    async with client.stream("POST", f"{root}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                arrivals.append(time.perf_counter())
    ttft = (arrivals[0] - started) * 1000
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
    return {"ttft_ms": ttft, "itl_ms": gaps}


async def interactive(root: str, args: argparse.Namespace) -> dict[str, float]:
    """`--requests` streams, `--concurrency` at a time; TTFT and ITL p50/p95."""
    limit = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient(timeout=300) as client:

        async def run() -> dict[str, Any]:
            async with limit:
                return await one_stream(client, root, args.max_tokens)

        results = await asyncio.gather(*(run() for _ in range(args.requests)))
    ttfts = [r["ttft_ms"] for r in results]
    itls = [gap for r in results for gap in r["itl_ms"]]
    return {
        "ttft_p50": percentile(ttfts, 50), "ttft_p95": percentile(ttfts, 95),
        "itl_p50": percentile(itls, 50), "itl_p95": percentile(itls, 95),
    }  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if values else 0.0


def submit_batch(client: httpx.Client, root: str, num_lines: int, max_tokens: int) -> str:
    lines = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Summarize document {i}."}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(num_lines)
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    files = {"file": ("batch.jsonl", io.BytesIO(content))}
    uploaded = client.post(f"{root}/v1/files", files=files, data={"purpose": "batch"}).json()
    body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}  # fmt: skip
    return str(client.post(f"{root}/v1/batches", json=body).json()["id"])


def batch_state(client: httpx.Client, root: str, batch_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"{root}/v1/batches/{batch_id}").json()
    return body


def wait_for(
    client: httpx.Client, root: str, batch_id: str, done: int | None = None
) -> dict[str, Any]:
    """Poll until at least `done` lines have finished, or (`done` None) the batch ended."""
    while True:
        batch = batch_state(client, root, batch_id)
        counts = batch["request_counts"]
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        if done is not None and counts["completed"] + counts["failed"] >= done:
            return batch
        time.sleep(0.2)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        process, root = start_server(args, Path(tmp))
        try:
            asyncio.run(interactive(root, argparse.Namespace(**{**vars(args), "requests": 4})))
            alone = asyncio.run(interactive(root, args))
            with httpx.Client(timeout=300) as client:
                batch_id = submit_batch(client, root, args.batch_lines, args.batch_max_tokens)
                wait_for(client, root, batch_id, 1)
                during = asyncio.run(interactive(root, args))
                still_running = batch_state(client, root, batch_id)["status"] == "in_progress"
                final = wait_for(client, root, batch_id)
        finally:
            process.kill()
            process.wait()
    seconds = final["completed_at"] - final["in_progress_at"]
    return {
        "backend": args.backend, "alone": alone, "with_batch": during,
        "batch_still_running_after_interactive": still_running,
        "batch": {
            "lines": args.batch_lines, "status": final["status"],
            "completed": final["request_counts"]["completed"], "seconds": seconds,
            "lines_per_s": final["request_counts"]["completed"] / max(seconds, 1),
            "output_tokens_per_s": final["usage"]["output_tokens"] / max(seconds, 1),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "write"},
    }  # fmt: skip


def table(result: dict[str, Any]) -> str:
    alone, during, batch = result["alone"], result["with_batch"], result["batch"]
    rows = [
        "| interactive | TTFT p50 ms | TTFT p95 ms | ITL p50 ms | ITL p95 ms |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {m['ttft_p50']:.0f} | {m['ttft_p95']:.0f} | {m['itl_p50']:.1f} | "
            f"{m['itl_p95']:.1f} |"
            for name, m in (("no batch", alone), (f"{batch['lines']}-line batch running", during))
        ),
    ]
    ratio = during["ttft_p50"] / alone["ttft_p50"]
    return "\n".join(
        [
            *rows,
            "",
            f"TTFT p50 with the batch / without: {ratio:.2f}x (target: at most 1.5x)",
            f"batch: {batch['status']}, {batch['completed']}/{batch['lines']} lines in "
            f"{batch['seconds']} s = {batch['lines_per_s']:.1f} lines/s, "
            f"{batch['output_tokens_per_s']:.0f} output tokens/s",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("local", "fake"), default="local")
    parser.add_argument("--requests", type=int, default=40, help="interactive streams per phase")
    parser.add_argument("--concurrency", type=int, default=2, help="interactive streams at once")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-lines", type=int, default=500)
    parser.add_argument("--batch-max-tokens", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=16)
    parser.add_argument("--batch-share", type=float, default=0.5)
    args = parser.parse_args()
    result = measure(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "batch_interference" if args.backend == "local" else "batch_interference_fake"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table(result) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()

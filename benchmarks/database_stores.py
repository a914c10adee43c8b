"""PostgreSQL against SQLite: per-request admission cost and batch lines/s.

    python benchmarks/database_stores.py                       # the run in docs/benchmarks.md
    python benchmarks/database_stores.py --requests 50 --lines 50   # a quick smoke run

For each store (SQLite files in the home, then a PostgreSQL cluster this script starts with
`initdb`, as tests/postgres_process.py does) it measures:

- admission, in process: `KeyGatekeeper.authenticate` + `acquire` + `release` for one key, one
  request at a time (the key read from the store, the slot, usage queued for the writer);
- admission over HTTP: sequential `POST /v1/chat/completions` with `max_tokens: 1` to a
  `llmserve serve` process with the fake model (so the store is most of what is left);
- a batch of `--lines` chat lines on the fake model, from create to `completed`: lines/s.

Writes benchmarks/results/database_stores.{md,json} and docs/database_stores.png.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
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
sys.path.insert(0, str(ROOT / "tests"))

from postgres_process import PostgresProcess  # noqa: E402

from llmserve.auth.base import UsageRecord  # noqa: E402
from llmserve.auth.factory import build_gatekeeper, open_key_store  # noqa: E402
from llmserve.auth.keys import KeySpec  # noqa: E402
from llmserve.config import AuthConfig, ModelConfig, ServerConfig  # noqa: E402

MODEL = "bench-chat"
CONFIG = """
home: {home}
models:
  - {{name: {model}, source: fake, backend: fake}}
jobs: {{lease_s: 5.0}}
"""


def config_for(home: Path, database: str | None) -> ServerConfig:
    models = (ModelConfig(MODEL, source="fake", backend="fake"),)
    return ServerConfig(models=models, home=home, auth=AuthConfig(), database=database)


async def admission_in_process(home: Path, database: str | None, num: int) -> list[float]:
    """Microseconds of authenticate + acquire + release, one request at a time."""
    config = config_for(home, database)
    store = open_key_store(home, database)
    _, secret = store.create_key(KeySpec("bench-in-process"))
    store.close()
    gatekeeper = build_gatekeeper(config)
    header = f"Bearer {secret}"
    times = []
    for _ in range(num):
        started = time.perf_counter()
        principal = await gatekeeper.authenticate(header)
        slot = await gatekeeper.acquire(principal, MODEL, 10)
        await slot.release(UsageRecord(MODEL, prompt_tokens=5, completion_tokens=1))
        times.append((time.perf_counter() - started) * 1e6)
    await gatekeeper.close()
    return times


def start_server(home: Path, database: str | None) -> tuple[subprocess.Popen[str], str]:
    config = home / "llmserve.yaml"
    home.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(home=home, model=MODEL))
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config), "--port", "0"]
    if database is not None:
        command += ["--database", database]
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", process.stdout.readline())
    if match is None:
        process.kill()
        raise SystemExit("the server did not start")
    return process, match.group(1)


def http_admission(client: httpx.Client, root: str, num: int) -> list[float]:
    """Milliseconds of sequential one-token chat requests."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    times = []
    for _ in range(num):
        started = time.perf_counter()
        response = client.post(f"{root}/v1/chat/completions", json=body)
        response.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return times


def batch_rate(client: httpx.Client, root: str, num_lines: int) -> float:
    """Lines per second of one batch, from create to completed."""
    lines = [
        {"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": MODEL, "messages": [{"role": "user", "content": f"doc {i}"}],
                  "max_tokens": 8}}
        for i in range(num_lines)
    ]  # fmt: skip
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    files = {"file": ("batch.jsonl", io.BytesIO(content))}
    uploaded = client.post(f"{root}/v1/files", files=files, data={"purpose": "batch"}).json()
    body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}  # fmt: skip
    started = time.perf_counter()
    batch_id = client.post(f"{root}/v1/batches", json=body).json()["id"]
    while client.get(f"{root}/v1/batches/{batch_id}").json()["status"] != "completed":
        time.sleep(0.05)
    return num_lines / (time.perf_counter() - started)


def measure(name: str, database: str | None, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as folder:
        home = Path(folder)
        in_process = asyncio.run(admission_in_process(home / "gk", database, args.requests))
        store = open_key_store(home / "srv", database)
        _, secret = store.create_key(KeySpec("bench-http"))
        store.close()
        process, root = start_server(home / "srv", database)
        try:
            headers = {"Authorization": f"Bearer {secret}"}
            with httpx.Client(timeout=300, headers=headers) as client:
                http_admission(client, root, 10)  # warm up
                http = http_admission(client, root, args.requests)
                rate = batch_rate(client, root, args.lines)
        finally:
            process.terminate()
            process.wait(timeout=60)
    return {
        "store": name,
        "admission_us_p50": statistics.median(in_process),
        "admission_us_p95": percentile(in_process, 95),
        "http_ms_p50": statistics.median(http),
        "http_ms_p95": percentile(http, 95),
        "batch_lines_per_s": rate,
    }


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--lines", type=int, default=300)
    args = parser.parse_args()
    postgres = PostgresProcess()
    postgres.start()
    try:
        rows = [
            measure("sqlite", None, args),
            measure("postgresql", postgres.create_database("bench"), args),
        ]
    finally:
        postgres.remove()
    write(rows, args)


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "requests": args.requests,
        "lines": args.lines,
    }
    (RESULTS / "database_stores.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2)
    )
    table = [
        "| store | admission p50 µs | admission p95 µs | HTTP request p50 ms | HTTP p95 ms "
        "| batch lines/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['store']} | {r['admission_us_p50']:.0f} | {r['admission_us_p95']:.0f} "
            f"| {r['http_ms_p50']:.2f} | {r['http_ms_p95']:.2f} | {r['batch_lines_per_s']:.1f} |"
        )
    (RESULTS / "database_stores.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    plot(rows)


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.2))
    names = [r["store"] for r in rows]
    left.bar(names, [r["admission_us_p50"] for r in rows], color=["#888", "#336699"])
    left.set_title("admission p50 (µs, lower is better)")
    right.bar(names, [r["batch_lines_per_s"] for r in rows], color=["#888", "#336699"])
    right.set_title("batch lines/s (higher is better)")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "database_stores.png", dpi=100)


if __name__ == "__main__":
    main()

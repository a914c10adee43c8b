"""Render docs/grafana/dashboard.png: the dashboard's panels, fed by a real run.

    python scripts/dashboard_snapshot.py        # about two minutes; needs `prometheus` on PATH

It starts `llmserve serve` on the built-in tiny-chat model (our engine, a deliberately small KV
cache so requests queue and get preempted) with three API keys, a real Prometheus scraping its
/metrics every second, and a minute of load: streaming and non-streaming chat from two keys and a
rate-limited third one. Then it sends SIGTERM while the load goes on (new requests get 503
draining). Every expression of docs/grafana/llmserve-dashboard.json is evaluated by that
Prometheus (`query_range`) and drawn with matplotlib in the dashboard's layout: Grafana itself is
not installable here, so this draws the same queries over the same data, not Grafana's pixels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import openai

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "llmserve-dashboard.json"
OUTPUT = ROOT / "docs" / "grafana" / "dashboard.png"
MODEL = "llmserve/tiny-chat"
LOAD_S = 60
SERVER_PORT, PROMETHEUS_PORT = 8871, 9871
RATE_INTERVAL = "10s"  # $__rate_interval: ten scrapes
CONFIG = f"""
host: 127.0.0.1
port: {SERVER_PORT}
shutdown_timeout_s: 8
engine:
  max_num_seqs: 12
  kv_cache_memory_mb: 1
"""
PROMETHEUS = f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: llmserve
    static_configs:
      - targets: ["127.0.0.1:{SERVER_PORT}"]
"""


def llmserve(home: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    command = [sys.executable, "-m", "llmserve", *args]
    return subprocess.Popen(command, env=env, text=True, **popen)


def create_key(home: Path, name: str, *limits: str) -> str:
    with llmserve(home, "keys", "create", "--name", name, *limits, stdout=subprocess.PIPE) as p:
        secret, _ = p.communicate()
    return secret.strip()


@contextlib.contextmanager
def running(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer")


async def worker(
    secret: str, stream: bool, max_tokens: int, stop_at: float, rng: random.Random
) -> None:
    """Chat requests until `stop_at` or until the server is gone; refusals wait a second."""
    words = ["tell", "me", "a", "long", "story", "about", "the", "sea", "and", "the", "stars"]
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{SERVER_PORT}/v1", api_key=secret, max_retries=0
    ) as client:
        while time.monotonic() < stop_at:
            prompt = " ".join(rng.choices(words, k=rng.randint(5, 40)))
            fields: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": rng.randint(max_tokens // 4, max_tokens),
                "extra_body": {"ignore_eos": True},
            }
            try:
                if stream:
                    async for _ in await client.chat.completions.create(**fields, stream=True):
                        pass
                else:
                    await client.chat.completions.create(**fields)
            except openai.APIConnectionError:
                return  # the server has stopped
            except (openai.RateLimitError, openai.InternalServerError):
                await asyncio.sleep(1)  # 429, or 503 while draining
            except openai.APIError:
                pass  # a stream cut off in-band by the drain's timeout


async def run_load(keys: dict[str, str], server: subprocess.Popen[str]) -> tuple[float, float]:
    """A minute of load, then SIGTERM under load; returns (start, end) in Unix time."""
    start = time.time()
    stop_at = time.monotonic() + LOAD_S + 15
    rng = random.Random(0)
    # (key, streaming, most tokens asked for): team-c asks often and runs into its rpm limit.
    plan = [("team-a", True, 300)] * 8 + [("team-b", False, 200)] * 4 + [("team-c", False, 8)] * 2
    tasks = [asyncio.create_task(worker(keys[k], s, n, stop_at, rng)) for k, s, n in plan]
    await asyncio.sleep(LOAD_S)
    server.send_signal(signal.SIGTERM)  # drain: in-flight requests finish, new ones get 503
    await asyncio.gather(*tasks)
    await asyncio.to_thread(server.wait, 60)
    await asyncio.sleep(5)  # let Prometheus notice the end
    return start, time.time()


def query_range(expr: str, start: float, end: float) -> list[dict[str, Any]]:
    expr = expr.replace('=~"$model_name"', '=~".*"').replace("$__rate_interval", RATE_INTERVAL)
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": 1}
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query_range"
    body = httpx.get(url, params=params, timeout=30).json()
    if body["status"] != "success":
        raise RuntimeError(f"{expr}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    return template.replace("{{", "{").replace("}}", "}").format_map(labels | {"__": ""})


def draw(start: float, end: float, path: Path) -> None:
    """Every panel of the dashboard, in its grid, from Prometheus."""
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]
    rows = -(-len(panels) // 2)  # two panels per row, as in the dashboard
    plt.style.use("dark_background")
    figure, axes = plt.subplots(rows, 2, figsize=(16, 3.4 * rows), squeeze=False)
    for panel, ax in zip(panels, axes.flat, strict=False):
        for target in panel["targets"]:
            for series in query_range(target["expr"], start, end):
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                ax.plot(times, values, label=legend(target["legendFormat"], series["metric"]))
        ax.set_title(panel["title"], loc="left", fontsize=11)
        ax.set_ylabel(panel["fieldConfig"]["defaults"]["unit"], fontsize=8)
        ax.set_xlim(0, end - start)
        ax.grid(alpha=0.2)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left", ncol=2)
    figure.suptitle(
        "llmserve dashboard (docs/grafana) over a real run, queried from Prometheus; "
        "x: seconds since the load began, SIGTERM at 60 s"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    figure.savefig(path, dpi=80)


def main() -> int:
    if shutil.which("prometheus") is None:
        print("needs prometheus on PATH (apt-get install prometheus)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "llmserve.yaml").write_text(CONFIG)
        (home / "prometheus.yml").write_text(PROMETHEUS)
        keys = {
            "team-a": create_key(home, "team-a", "--max-concurrency", "8"),
            "team-b": create_key(home, "team-b", "--max-concurrency", "4"),
            "team-c": create_key(home, "team-c", "--rpm", "6"),
        }
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={home / 'prometheus.yml'}",
             f"--storage.tsdb.path={home / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        log = (home / "server.log").open("w")
        server = llmserve(home, "serve", "--config", str(home / "llmserve.yaml"), stderr=log)
        with running(prometheus), running(server):
            wait_http(f"http://127.0.0.1:{SERVER_PORT}/health")
            wait_http(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready")
            start, end = asyncio.run(run_load(keys, server))
            draw(start, end, OUTPUT)
        log.close()
        print("\n".join((home / "server.log").read_text().splitlines()[-8:]))
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

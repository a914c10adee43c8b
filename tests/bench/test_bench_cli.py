"""`llmserve bench` against a real server whose fake model takes a known time per token."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
TOKEN_DELAY_S = 0.05  # long next to scheduling noise on a busy 2-core machine
SERVER_SCRIPT = Path(__file__).parent / "fake_delay_server.py"
NUM_PROMPTS, RATE, OUTPUT_LEN = 96, 16.0, 10


@pytest.fixture(scope="module")
def fake_server_url() -> Iterator[str]:
    """The /v1 URL of a server whose fake model sleeps TOKEN_DELAY_S before every token."""
    command = [sys.executable, str(SERVER_SCRIPT), str(TOKEN_DELAY_S)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def bench_run(fake_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One run at RATE requests/s with Poisson arrivals; its stdout, JSON and plot path."""
    out = tmp_path_factory.mktemp("bench")
    args = ["--base-url", fake_server_url, "--model", "fake-model", "--seed", "3"]
    args += ["--num-prompts", str(NUM_PROMPTS), "--request-rate", str(RATE)]
    args += ["--random-input-len", "16", "--random-output-len", str(OUTPUT_LEN)]
    args += ["--max-concurrency", "32", "--metric-percentiles", "50,99"]
    # NOTE: SLOs 20x above the delay: every request meets them on any machine, so goodput must
    # equal throughput; what is checked is the counting, not this machine's speed.
    args += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--goodput", "tpot:1000", "ttft:60000"]
    args += ["--save-result", "--save-detailed", "--result-dir", str(out)]
    args += ["--result-filename", "run.json", "--plot", str(out / "run.png")]
    command = [sys.executable, "-m", "llmserve", "bench", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=out)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "run.json").read_text())
    return {"stdout": done.stdout, "result": result, "plot": out / "run.png"}


def test_bench_prints_vllms_result_block(bench_run: dict[str, object]) -> None:
    stdout = str(bench_run["stdout"])
    block = stdout[stdout.index("=" * 12 + " Serving Benchmark Result ") :]
    assert re.search(rf"^Successful requests: +{NUM_PROMPTS} *$", block, re.M)
    assert re.search(r"^Request rate configured \(RPS\): +16\.00 *$", block, re.M)
    assert re.search(rf"^Total generated tokens: +{NUM_PROMPTS * OUTPUT_LEN} *$", block, re.M)
    assert re.search(r"^Request goodput \(req/s\): +\d+\.\d\d *$", block, re.M)
    for header in ("Time to First Token", "Inter-token Latency", "End-to-end Latency"):
        assert f"-{header}-" in block
    assert re.search(r"^P99 ITL \(ms\): +\d+\.\d\d *$", block, re.M)
    assert "\n" + "=" * 50 + "\nSaved the result to " in block


def test_tpot_and_itl_match_the_servers_delay_per_token(bench_run: dict[str, object]) -> None:
    result = bench_run["result"]
    assert isinstance(result, dict)
    assert result["completed"] == NUM_PROMPTS and result["failed"] == 0
    assert result["output_lens"] == [OUTPUT_LEN] * NUM_PROMPTS  # from the server's usage
    assert result["total_input_tokens"] == NUM_PROMPTS * 17  # 16 tokens and BOS, cut by /tokenize
    delay_ms = TOKEN_DELAY_S * 1000
    for key in ("mean_tpot_ms", "median_tpot_ms", "mean_itl_ms", "median_itl_ms"):
        assert result[key] == pytest.approx(delay_ms, rel=0.10), key
    assert result["request_goodput"] == pytest.approx(result["request_throughput"])


def test_arrivals_follow_a_poisson_process_at_the_requested_rate(
    bench_run: dict[str, object],
) -> None:
    result = bench_run["result"]
    assert isinstance(result, dict)
    arrivals = np.sort(np.array(result["start_times"]) - np.array(result["queue_times"]))
    gaps = np.diff(arrivals)
    assert (len(gaps) / (arrivals[-1] - arrivals[0])) == pytest.approx(RATE, rel=0.15)
    # exponential gaps: standard deviation equal to the mean (a fixed-rate sender would give ~0)
    assert 0.7 < gaps.std() / gaps.mean() < 1.3


def test_bench_writes_its_plot(bench_run: dict[str, object]) -> None:
    plot = bench_run["plot"]
    assert isinstance(plot, Path)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert plot.stat().st_size > 20_000  # two panels of curves, not an empty canvas

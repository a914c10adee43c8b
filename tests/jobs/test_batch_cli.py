"""`llmserve batch` as a user runs it: a real subprocess against the live server, and offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobs_helpers import REPLY, SLOW, JobsServer, chat_line, jsonl, parse_jsonl

NUM_LINES = 6


def batch_cli(*args: str, server: JobsServer | None = None) -> subprocess.CompletedProcess[str]:
    remote = ["--base-url", server.base_url, "--api-key", server.alice] if server else []
    return subprocess.run(
        [sys.executable, "-m", "llmserve", "batch", *args, *remote],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_submit_wait_shows_progress_and_writes_the_results(
    jobs_server: JobsServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([chat_line(f"cli-{i}") for i in range(NUM_LINES)]))
    output = tmp_path / "out.jsonl"
    done = batch_cli("submit", str(source), "--wait", "-o", str(output), server=jobs_server)
    assert done.returncode == 0, done.stderr
    assert f"{NUM_LINES}/{NUM_LINES}" in done.stderr  # the progress bar of request_counts
    assert f"completed: {NUM_LINES} completed, 0 failed of {NUM_LINES}" in done.stdout
    lines = parse_jsonl(output.read_text())
    assert sorted(line["custom_id"] for line in lines) == [f"cli-{i}" for i in range(NUM_LINES)]
    assert {line["response"]["body"]["choices"][0]["message"]["content"] for line in lines} == {
        REPLY
    }
    batch_id = done.stdout.split()[1]
    assert batch_id in batch_cli("list", server=jobs_server).stdout
    status = batch_cli("status", batch_id, server=jobs_server)
    assert f"completed   {NUM_LINES}/{NUM_LINES}" in status.stdout
    again = tmp_path / "again.jsonl"
    assert batch_cli("download", batch_id, "-o", str(again), server=jobs_server).returncode == 0
    assert again.read_bytes() == output.read_bytes()


def test_cancel_from_the_terminal(jobs_server: JobsServer, tmp_path: Path) -> None:
    source = tmp_path / "slow.jsonl"
    source.write_bytes(jsonl([chat_line(f"sl-{i}", model=SLOW) for i in range(20)]))
    created = batch_cli("submit", str(source), server=jobs_server)
    batch_id = created.stdout.split()[1]
    cancelled = batch_cli("cancel", batch_id, server=jobs_server)
    assert cancelled.returncode == 0
    assert "cancel" in cancelled.stdout
    unknown = batch_cli("status", "batch_nope", server=jobs_server)
    assert unknown.returncode == 1
    assert "404" in unknown.stderr and "batch_nope" in unknown.stderr


def test_offline_run_resumes_with_the_same_output(tmp_path: Path) -> None:
    config = tmp_path / "llmserve.yaml"
    config.write_text(
        f"home: {tmp_path / 'home'}\nmodels:\n  - {{name: fake, source: fake, backend: fake}}\n"
    )
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl([chat_line(f"off-{i}", model="fake") for i in range(10)]))
    output = tmp_path / "out.jsonl"
    first = batch_cli("run", str(source), "-o", str(output), "--model", "fake", "--config",
                      str(config))  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "10 lines run" in first.stdout
    kept = output.read_text().splitlines()[:4]
    output.write_text("\n".join(kept) + "\n" + kept[0][:10])  # as if killed mid-write
    second = batch_cli("run", str(source), "-o", str(output), "--model", "fake", "--config",
                       str(config))  # fmt: skip
    assert "6 lines run" in second.stdout
    lines = parse_jsonl(
        "\n".join(text for text in output.read_text().splitlines() if text.endswith("}"))
    )
    assert sorted(line["custom_id"] for line in lines) == sorted(f"off-{i}" for i in range(10))
    assert all(line["response"]["status_code"] == 200 for line in lines)

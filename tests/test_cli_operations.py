"""`llmserve serve`'s operations flags, its first log line, text logs and a clean SIGTERM exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmserve.cli import build_parser, main
from llmserve.cli.serve import serve_config
from llmserve.config import LogConfig

FAKE_CONFIG = "models:\n  - name: demo\n    source: fake\n    backend: fake\n"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "llmserve.yaml"
    path.write_text(FAKE_CONFIG)
    return path


def test_operations_flags_override_the_config(tmp_path: Path) -> None:
    args = ["serve", "--config", str(write_config(tmp_path)), "--shutdown-timeout", "5"]
    args += ["--log-level", "debug", "--log-format", "json"]
    config = serve_config(build_parser().parse_args(args))
    assert config.shutdown_timeout_s == 5
    assert config.log == LogConfig(level="debug", format="json")


def test_negative_shutdown_timeout_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["serve", "--config", str(write_config(tmp_path)), "--shutdown-timeout", "-1"]
    assert main(args) == 2
    assert "shutdown_timeout_s must be non-negative" in capsys.readouterr().err


def read_line(path: Path, pattern: str, timeout_s: float = 60) -> str:
    """The first line of the file at `path` matching `pattern`, waiting for it to be written."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in:\n{path.read_text()}")


@pytest.mark.slow
def test_serve_logs_at_once_per_request_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LLMSERVE_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(write_config(tmp_path))]
    log = tmp_path / "stderr.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [*command, "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        ) as process,
    ):
        try:
            assert process.stdout is not None
            base_url = re.findall(r"http://127\.0\.0\.1:\d+", process.stdout.readline())[0]
            first = log.read_text().splitlines()[0]
            assert re.match(
                rf"^{TIMESTAMP} INFO llmserve\.server: .*loading demo \(fake, fake\)", first
            )
            assert httpx.get(f"{base_url}/live").json() == {"status": "alive"}
            assert httpx.get(f"{base_url}/health").json()["status"] == "ok"
            body = {"model": "demo", "messages": [{"role": "user", "content": "Hi"}]}
            reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=10)
            request_id = reply.headers["x-request-id"]
            line = read_line(log, f"request_id={request_id}")
            usage = reply.json()["usage"]
            assert re.match(rf"^{TIMESTAMP} INFO llmserve\.requests: ", line)
            assert "status=200 key_id=anonymous model=demo" in line
            assert f"prompt_tokens={usage['prompt_tokens']}" in line
            assert f"completion_tokens={usage['completion_tokens']}" in line
            assert re.search(r"latency_s=\d+\.\d+", line)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert "Traceback" not in log.read_text()

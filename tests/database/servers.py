"""Real `llmserve serve` processes sharing one --database: start, stop, kill, and their URLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ADMIN_KEY = "admin-secret-for-database-tests"
CONFIG = """
home: {home}
models:
  - {{name: fake-chat, source: fake, backend: fake, fake_token_delay_s: 0.002}}
  - {{name: slow-chat, source: fake, backend: fake, fake_token_delay_s: 0.02}}
jobs:
  lease_s: 1.0
"""


class Server:
    """One `llmserve serve --config … [--database …]` process with its own home."""

    def __init__(self, workdir: Path, database: str | None, state: str | None = None) -> None:
        home = workdir / "home"
        config = workdir / "llmserve.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(CONFIG.format(home=home), encoding="utf-8")
        command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config)]
        command += ["--port", "0"]
        if database is not None:  # None: SQLite in the home
            command += ["--database", database]
        if state is not None:
            command += ["--state", state]
        env = {**os.environ, "LLMSERVE_HOME": str(home), "LLMSERVE_ADMIN_KEY": ADMIN_KEY}
        self.home = home
        self.log = workdir / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        assert self.process.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", self.process.stdout.readline())
        if match is None:
            self.kill()
            raise RuntimeError(f"the server did not start: {self.log.read_text()}")
        self.url = match.group(1)

    def stop(self) -> None:
        """SIGTERM: drain, write pending usage, exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._close()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        self.process.kill()
        self.process.wait(timeout=60)
        self._close()

    def _close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()

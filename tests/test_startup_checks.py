"""`llmserve serve` start-up mistakes: one `llmserve: ...` line on stderr and exit status 2, found
before any model loads (the real command in a subprocess)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EXIT_USAGE = 2
# The issue asks for "within 10 s"; a check that passed by mistake would go on to load models.
PROMPT_S = 10
PROCESS_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with an empty llmserve home and an empty Hugging Face cache."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS"))}
    return {**variables, "LLMSERVE_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}


def serve_fails(env: dict[str, str], *args: str) -> str:
    """Run `llmserve serve ARGS`; assert it failed fast with exit 2; return its one stderr line."""
    command = [sys.executable, "-m", "llmserve", "serve", "--port", "0", *args]
    started = time.monotonic()
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S
    )
    took = time.monotonic() - started
    assert result.returncode == EXIT_USAGE, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("llmserve: ")
    assert result.stdout == ""
    assert took < PROMPT_S
    return line


def test_missing_model_folder(env: dict[str, str], tmp_path: Path) -> None:
    line = serve_fails(env, "--model", str(tmp_path / "no-such-model"))
    assert line == (
        f"llmserve: model folder {tmp_path / 'no-such-model'} does not exist: check the path, "
        "or give a Hugging Face hub id such as org/name"
    )


def test_folder_that_is_not_a_model(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    line = serve_fails(env, "--model", str(tmp_path / "photos"))
    assert line == (
        f"llmserve: model folder {tmp_path / 'photos'} has no config.json, so it is not a "
        "transformers model folder: point at the folder that holds config.json and the weights"
    )


def test_neither_folder_nor_hub_id(env: dict[str, str]) -> None:
    line = serve_fails(env, "--model", "models/org/name")
    assert "is neither a folder here nor a Hugging Face hub id (org/name)" in line


def test_hub_id_not_cached_while_offline(env: dict[str, str], tmp_path: Path) -> None:
    line = serve_fails({**env, "HF_HUB_OFFLINE": "1"}, "--model", "org/some-model")
    cache = tmp_path / "hf" / "hub"
    assert line == (
        f"llmserve: model org/some-model is not in the Hugging Face cache ({cache}) and "
        "HF_HUB_OFFLINE is set: download it first (hf download org/some-model), unset "
        "HF_HUB_OFFLINE, or give a local model folder"
    )


def test_hub_id_while_the_hub_is_out_of_reach(env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    line = serve_fails({**env, "HF_ENDPOINT": endpoint}, "--model", "org/some-model")
    assert line.startswith(
        f"llmserve: cannot reach the Hugging Face hub at {endpoint} to download org/some-model"
    )
    assert line.endswith("set HF_HUB_OFFLINE=1")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_port_in_use(env: dict[str, str], taken_port: int) -> None:
    line = serve_fails(env, "--port", str(taken_port))
    assert line == (
        f"llmserve: port {taken_port} on 127.0.0.1 is already in use: stop the program "
        "listening there, or choose another port with --port"
    )


def test_unreachable_redis(env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = serve_fails(env, "--state", url)
    assert line.startswith(f"llmserve: cannot reach Redis at {url} (")
    assert line.endswith("start redis-server there, or fix --state (auth.limit_store)")


def test_malformed_redis_url_hides_its_password(env: dict[str, str]) -> None:
    line = serve_fails(env, "--state", "redis://user:secret@127.0.0.1:notaport/0")
    assert line.startswith("llmserve: redis://127.0.0.1:notaport/0 is not a valid Redis URL")
    assert "secret" not in line

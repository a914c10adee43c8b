"""`llmserve keys` as a user runs it, and the bind policy `serve` applies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmserve.api.admission.queue_gauge import check_queue
from llmserve.auth.base import UsageRecord
from llmserve.auth.policy import BindPolicyError, check_bind_policy
from llmserve.auth.store import SqliteKeyStore
from llmserve.cli import main
from llmserve.errors import OverloadedError
from llmserve.types import BackendLoad


def keys(home: Path, *args: str) -> list[str]:
    """`llmserve keys ARGS --home HOME` (--home may also come before the action)."""
    return ["keys", *args, "--home", str(home)]


def test_create_prints_the_key_once_and_list_never_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["create", "--name", "alice", "--max-concurrency", "5", "--models", "a,b"]
    assert main(keys(tmp_path, *args, "--rpm", "10", "--expires", "30d")) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("lls-") and "shown only once" in err
    assert main(["keys", "--home", str(tmp_path), "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "active" in listing and secret not in listing
    assert f"lls-...{secret[-4:]}" in listing
    assert main(keys(tmp_path, "list", "--json")) == 0
    [key] = json.loads(capsys.readouterr().out)
    assert (key["max_concurrency"], key["rpm"], key["models"]) == (5, 10, ["a", "b"])


def test_revoke_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(keys(tmp_path, "create", "--name", "bob"))
    store = SqliteKeyStore(tmp_path / "llmserve.db")
    [key] = store.list_keys()
    store.record_usage(key.key_id, UsageRecord("m1", 12, 34))
    store.close()
    capsys.readouterr()
    assert main(keys(tmp_path, "usage", "bob", "--json")) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (1, 12, 34)
    assert main(keys(tmp_path, "revoke", "bob")) == 0
    assert "Revoked key 'bob'" in capsys.readouterr().out
    assert main(keys(tmp_path, "revoke", "bob")) == 1
    assert "no active key named 'bob'" in capsys.readouterr().err


def test_create_rejects_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(keys(tmp_path, "create", "--name", "x", "--expires", "soon")) == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err
    main(keys(tmp_path, "create", "--name", "x"))
    assert main(keys(tmp_path, "create", "--name", "x")) == 2
    assert "a key named 'x' already exists" in capsys.readouterr().err


def test_serve_refuses_open_public_bind(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "llmserve", "serve", "--host", "0.0.0.0", "--port", "0"]
    env = {"LLMSERVE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no API keys" in result.stderr
    assert "--no-auth" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_may_serve_without_keys(host: str) -> None:
    check_bind_policy(host, has_keys=False, no_auth=False)


def test_public_bind_needs_keys_or_no_auth() -> None:
    with pytest.raises(BindPolicyError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_bind_policy("0.0.0.0", has_keys=False, no_auth=False)
    check_bind_policy("0.0.0.0", has_keys=True, no_auth=False)
    check_bind_policy("0.0.0.0", has_keys=False, no_auth=True)


def test_check_queue_answers_503_when_full() -> None:
    check_queue(BackendLoad(num_running=8, num_waiting=3), max_queue=4)
    with pytest.raises(OverloadedError, match="4 requests are waiting"):
        check_queue(BackendLoad(num_running=8, num_waiting=4), max_queue=4)

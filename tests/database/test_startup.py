"""`serve --database`: a database that does not answer, a newer schema or a wrong URL is one
`llmserve:` line and exit status 2, before anything loads; the schema is made and versioned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from postgres_process import PASSWORD, free_port

from llmserve.database.migrations import LATEST_VERSION

pytestmark = pytest.mark.slow


def serve(database: str, home: Path, *, from_env: bool = False) -> subprocess.CompletedProcess[str]:
    config = home / "llmserve.yaml"
    home.mkdir(parents=True, exist_ok=True)
    config.write_text("models:\n  - {name: fake-chat, source: fake, backend: fake}\n")
    command = [sys.executable, "-m", "llmserve", "serve", "--config", str(config)]
    command += ["--port", "0"]
    env = {**os.environ, "LLMSERVE_HOME": str(home)}
    if from_env:
        env["LLMSERVE_DATABASE_URL"] = database
    else:
        command += ["--database", database]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("from_env", [False, True], ids=["--database", "LLMSERVE_DATABASE_URL"])
def test_unreachable_database_is_one_line_and_exit_2(tmp_path: Path, from_env: bool) -> None:
    url = f"postgresql://llmserve:{PASSWORD}@127.0.0.1:{free_port()}/llmserve"
    done = serve(url, tmp_path, from_env=from_env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("llmserve: cannot reach PostgreSQL at postgresql://llmserve:***@")
    assert "start PostgreSQL there, or fix --database" in line
    assert PASSWORD not in done.stderr + done.stdout


def test_a_wrong_database_url_is_refused(tmp_path: Path) -> None:
    done = serve("mysql://root@localhost/db", tmp_path)
    assert done.returncode == 2
    assert "database must be sqlite:///PATH or postgresql://" in done.stderr


def test_schema_is_versioned_and_a_newer_one_is_refused(database_url: str, tmp_path: Path) -> None:
    from llmserve.auth.postgres_store import PostgresKeyStore

    PostgresKeyStore(database_url).close()  # creates the schema
    with psycopg.connect(database_url, autocommit=True) as connection:
        versions = connection.execute("SELECT version FROM schema_version").fetchall()
        assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]
        connection.execute("INSERT INTO schema_version VALUES (%s)", (LATEST_VERSION + 1,))
    done = serve(database_url, tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"has schema version {LATEST_VERSION + 1}, made by a newer llmserve" in line
    assert line.startswith("llmserve: the database at postgresql://llmserve:***@")

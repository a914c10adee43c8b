"""A PostgreSQL cluster of our own (initdb into a temporary folder, a free port), for tests.

PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` system user (which
Debian's package creates) through `runuser`, in a folder that user owns; as anyone else it runs as
that user. Binaries come from Debian's `postgresql` (scripts/install-services.sh installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

START_TIMEOUT_S = 60
USER = "llmserve"
PASSWORD = "llmserve-test-password"
SYSTEM_USER = "postgres"  # who runs the cluster when the tests run as root


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path:
    """The folder of initdb and postgres (the newest installed); skips the test without one."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (run scripts/install-services.sh)")
    return Path(initdb).parent


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _as_cluster_user() -> list[str]:
    """The command prefix that runs a program as the cluster's user."""
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pytest.skip(f"running as root needs a {SYSTEM_USER!r} system user to run PostgreSQL")
    return ["runuser", "-u", SYSTEM_USER, "--"]


class PostgresProcess:
    """`postgres` on 127.0.0.1:`port`, data in a fresh folder; `start` returns once it answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = postgres_bin()
        self.workdir = Path(tempfile.mkdtemp(prefix="llmserve-pg-"))
        self.data = self.workdir / "data"
        self._process: subprocess.Popen[bytes] | None = None
        self._prefix = _as_cluster_user()
        if self._prefix:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self._initdb()

    def url(self, database: str = "postgres") -> str:
        """The URL of `database`, with the test user's name and password."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _initdb(self) -> None:
        password_file = self.workdir / "password"
        password_file.write_text(PASSWORD, encoding="utf-8")
        if self._prefix:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        command = [str(self.bin / "initdb"), "-D", str(self.data), "-U", USER]
        command += [f"--pwfile={password_file}", "--auth-host=scram-sha-256"]
        command += ["--auth-local=trust", "-E", "UTF8", "--no-sync"]
        subprocess.run([*self._prefix, *command], check=True, capture_output=True)

    def start(self) -> None:
        command = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        command += ["-c", "listen_addresses=127.0.0.1"]
        command += ["-c", f"unix_socket_directories={self.workdir}"]
        command += ["-c", "fsync=off", "-c", "max_connections=200"]
        self._process = subprocess.Popen(
            [*self._prefix, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_until_it_answers(self._process)

    def stop(self) -> None:
        """Stop the server (a fast shutdown: open connections are cut)."""
        if self._process is not None:
            command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast"]
            subprocess.run([*self._prefix, *command], check=False, capture_output=True)
            self._process.wait(timeout=START_TIMEOUT_S)
            self._process = None

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        """Stop, then delete the data folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_until_it_answers(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("postgres exited at start")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not answer within {START_TIMEOUT_S} s")

"""Fixtures of the PostgreSQL tests: a cluster of our own, a fresh database per test, Redis."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

# NOTE: pytest runs with --import-mode=importlib; this makes the helpers importable by name.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "auth"))

from postgres_process import PostgresProcess
from redis_process import RedisProcess, free_port


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresProcess]:
    """A PostgreSQL server of our own (scripts/install-services.sh installs the binaries)."""
    server = PostgresProcess()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def database_url(postgres: PostgresProcess) -> str:
    """A new, empty database for this test."""
    return postgres.create_database(f"t_{secrets.token_hex(6)}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The shared redis-server, emptied for this test."""
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    return redis_server

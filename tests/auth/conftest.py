"""Fixtures for auth tests: a key store in a tmp dir and a real redis-server on a free port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from llmserve.auth.store import SqliteKeyStore

# NOTE: pytest runs with --import-mode=importlib; this makes the helper modules
# `auth_live_server` and `redis_process` (real servers for these tests) importable from them.
sys.path.insert(0, str(Path(__file__).parent))

from redis_process import RedisProcess, free_port


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteKeyStore]:
    """An empty key store."""
    key_store = SqliteKeyStore(tmp_path / "llmserve.db")
    yield key_store
    key_store.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server of our own (scripts/install-services.sh installs it)."""
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

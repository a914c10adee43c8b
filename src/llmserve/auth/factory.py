"""Build the gatekeeper and key store a `ServerConfig` asks for."""

from __future__ import annotations

from pathlib import Path

from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.key_store import KeyStore
from llmserve.auth.limits import LimitState, LocalLimitState
from llmserve.auth.postgres_store import PostgresKeyStore
from llmserve.auth.redis_limits import RedisLimitState
from llmserve.auth.store import SqliteKeyStore
from llmserve.config import AuthConfig, ServerConfig
from llmserve.database.url import parse_database_url

DB_FILENAME = "llmserve.db"


def key_store_path(home: Path) -> Path:
    """Where keys and usage live: one SQLite file in the llmserve home."""
    return home / DB_FILENAME


def open_key_store(home: Path, database: str | None = None) -> KeyStore:
    """The key store of `home` (created on first use), or of `database` when one is named."""
    if database is None:
        return SqliteKeyStore(key_store_path(home))
    parsed = parse_database_url(database)
    if parsed.sqlite_path is not None:
        return SqliteKeyStore(parsed.sqlite_path)
    return PostgresKeyStore(parsed.url)


def build_limit_state(config: AuthConfig) -> LimitState:
    """In-process limits, or Redis ones shared by every process given the same URL."""
    if config.redis_url is None:
        return LocalLimitState()
    return RedisLimitState(config.redis_url, lease_seconds=config.lease_seconds)


def build_gatekeeper(config: ServerConfig) -> KeyGatekeeper:
    """The server's gatekeeper; with no keys in the store it admits anonymous callers."""
    store = open_key_store(config.home, config.database)
    return KeyGatekeeper(store, build_limit_state(config.auth), config.auth)

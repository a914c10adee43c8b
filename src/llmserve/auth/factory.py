"""Build the gatekeeper and key store a `ServerConfig` asks for."""

from __future__ import annotations

from pathlib import Path

from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.limits import LimitState, LocalLimitState
from llmserve.auth.redis_limits import RedisLimitState
from llmserve.auth.store import SqliteKeyStore
from llmserve.config import AuthConfig, ServerConfig

DB_FILENAME = "llmserve.db"


def key_store_path(home: Path) -> Path:
    """Where keys and usage live: one SQLite file in the llmserve home."""
    return home / DB_FILENAME


def open_key_store(home: Path) -> SqliteKeyStore:
    """The key store of `home` (created on first use)."""
    return SqliteKeyStore(key_store_path(home))


def build_limit_state(config: AuthConfig) -> LimitState:
    """In-process limits, or Redis ones shared by every process given the same URL."""
    if config.redis_url is None:
        return LocalLimitState()
    return RedisLimitState(config.redis_url, lease_seconds=config.lease_seconds)


def build_gatekeeper(config: ServerConfig) -> KeyGatekeeper:
    """The server's gatekeeper; with no keys in the store it admits anonymous callers."""
    return KeyGatekeeper(open_key_store(config.home), build_limit_state(config.auth), config.auth)

"""The `KeyStore` protocol: keys and usage, in SQLite (`store.py`) or PostgreSQL
(`postgres_store.py`). Both implement every method with the same meaning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from llmserve.auth import usage_buckets
from llmserve.auth.base import UsageRecord
from llmserve.auth.keys import ApiKey, KeySpec
from llmserve.auth.postgres_store import PostgresKeyStore
from llmserve.auth.store import SqliteKeyStore, UsageDeltas, UsageRow


class KeyStore(Protocol):
    """Durable keys and usage. Every write is committed before the method returns."""

    def create_key(self, spec: KeySpec) -> tuple[ApiKey, str]: ...

    def find_by_hash(self, key_hash: str) -> ApiKey | None: ...

    def find_active(self, name: str) -> ApiKey | None: ...

    def list_keys(self) -> list[ApiKey]: ...

    def has_keys(self) -> bool: ...

    def revoke(self, name: str) -> ApiKey: ...

    def update_limits(self, name: str, limits: Mapping[str, int | None]) -> ApiKey: ...

    def record_usage(self, key_id: str, usage: UsageRecord) -> None: ...

    def record_rejection(self, key_id: str, model: str) -> None: ...

    def add_usage(self, deltas: UsageDeltas) -> None: ...

    def usage(self, name: str | None = None) -> list[UsageRow]: ...

    def bucketed_usage(
        self, bucket: usage_buckets.Bucket, since: int, name: str | None = None
    ) -> list[usage_buckets.UsageBucketRow]: ...

    def close(self) -> None: ...


def second_connection(store: KeyStore) -> KeyStore:
    """Another store on the same data, for the usage writer's thread (readers never wait)."""
    if isinstance(store, PostgresKeyStore):
        return PostgresKeyStore(store.url, max_connections=2)
    assert isinstance(store, SqliteKeyStore)
    return SqliteKeyStore(store.path)


def store_problem(store: KeyStore) -> str | None:
    """What is wrong with the store's database now (PostgreSQL down); None for SQLite files."""
    return store.database.problem() if isinstance(store, PostgresKeyStore) else None

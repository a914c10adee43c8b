"""The SQLite key store: keys hashed, names unique among active keys, usage totals."""

from __future__ import annotations

import pytest

from llmserve.auth.base import UsageRecord
from llmserve.auth.keys import KEY_PREFIX, KeySpec, hash_secret, parse_duration, parse_models
from llmserve.auth.store import DuplicateKeyNameError, SqliteKeyStore, UnknownKeyError


def test_created_key_has_prefix_and_is_stored_only_as_hash(store: SqliteKeyStore) -> None:
    key, secret = store.create_key(KeySpec(name="alice"))
    assert secret.startswith(KEY_PREFIX) and len(secret) > 40
    assert key.key_hash == hash_secret(secret)
    assert store.find_by_hash(hash_secret(secret)) == key
    store.close()
    db_bytes = b"".join(p.read_bytes() for p in store.path.parent.glob("llmserve.db*"))
    assert secret.encode() not in db_bytes
    assert secret[len(KEY_PREFIX) :].encode() not in db_bytes
    assert key.key_hash.encode() in db_bytes


def test_key_settings_round_trip(store: SqliteKeyStore) -> None:
    spec = KeySpec(
        "bob", max_concurrency=5, allowed_models=frozenset({"m1"}), rpm=10, tpm=100,
        expires_in_s=3600,
    )  # fmt: skip
    key, _ = store.create_key(spec)
    [listed] = store.list_keys()
    assert listed == key
    assert (listed.max_concurrency, listed.rpm, listed.tpm) == (5, 10, 100)
    assert listed.allowed_models == frozenset({"m1"})
    assert listed.expires_at is not None and listed.status() == "active"


def test_names_are_unique_among_active_keys(store: SqliteKeyStore) -> None:
    store.create_key(KeySpec("alice"))
    with pytest.raises(DuplicateKeyNameError, match="a key named 'alice' already exists"):
        store.create_key(KeySpec("alice"))
    store.revoke("alice")
    store.create_key(KeySpec("alice"))  # the name is free again once revoked
    assert [k.status() for k in store.list_keys()] == ["revoked", "active"]


def test_revoke_unknown_name_raises(store: SqliteKeyStore) -> None:
    with pytest.raises(UnknownKeyError, match="no active key named 'nobody'"):
        store.revoke("nobody")


def test_has_keys_stays_true_after_revoking_every_key(store: SqliteKeyStore) -> None:
    assert not store.has_keys()
    store.create_key(KeySpec("alice"))
    store.revoke("alice")
    assert store.has_keys()  # revoking the last key must not open the server


def test_usage_totals_per_key_and_model(store: SqliteKeyStore) -> None:
    alice, _ = store.create_key(KeySpec("alice"))
    bob, _ = store.create_key(KeySpec("bob"))
    store.record_usage(alice.key_id, UsageRecord("m1", 10, 5))
    store.record_usage(alice.key_id, UsageRecord("m1", 3, 0, is_error=True))
    store.record_usage(alice.key_id, UsageRecord("m2", 1, 1))
    store.record_rejection(alice.key_id, "m1")
    store.record_usage(bob.key_id, UsageRecord("m1", 7, 7))
    rows = {(r.key_name, r.model): r for r in store.usage()}
    m1 = rows["alice", "m1"]
    assert (m1.requests, m1.prompt_tokens, m1.completion_tokens) == (2, 13, 5)
    assert (m1.errors, m1.rejections, m1.total_tokens) == (1, 1, 18)
    assert [(r.key_name, r.model) for r in store.usage("bob")] == [("bob", "m1")]


def test_usage_survives_reopening(store: SqliteKeyStore) -> None:
    alice, _ = store.create_key(KeySpec("alice"))
    store.record_usage(alice.key_id, UsageRecord("m1", 4, 2))
    reopened = SqliteKeyStore(store.path)
    assert [(r.requests, r.total_tokens) for r in reopened.usage("alice")] == [(1, 6)]
    reopened.close()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2592000)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "0d", "1y", "-1d"])
def test_parse_duration_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_parse_models() -> None:
    assert parse_models(None) is None
    assert parse_models(" a, b ,,") == frozenset({"a", "b"})


def test_key_spec_validates() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        KeySpec("x", max_concurrency=0)
    with pytest.raises(ValueError, match="rpm must be at least 1"):
        KeySpec("x", rpm=0)

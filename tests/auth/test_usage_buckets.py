"""Usage in hour and day buckets: equal to the totals, an older store filled in, `since` read."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from auth_live_server import MODEL, auth, chat_body, fake_server_config, serve_in_process

from llmserve.api.access.usage_query import parse_since
from llmserve.api.app import create_app
from llmserve.auth.base import UsageRecord
from llmserve.auth.factory import build_gatekeeper
from llmserve.auth.keys import KeySpec
from llmserve.auth.store import SqliteKeyStore
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig
from llmserve.errors import InvalidRequestError

ADMIN_KEY = "admin-secret-for-bucket-tests-42"


def sums(store: SqliteKeyStore, bucket: str) -> dict[tuple[str, str], tuple[int, ...]]:
    totals: dict[tuple[str, str], tuple[int, ...]] = {}
    for row in store.bucketed_usage(bucket, 0):  # type: ignore[arg-type]
        now = (row.requests, row.prompt_tokens, row.completion_tokens, row.errors, row.rejections)
        before = totals.get((row.key_name, row.model), (0,) * 5)
        totals[(row.key_name, row.model)] = tuple(a + b for a, b in zip(before, now, strict=True))
    return totals


def totals(store: SqliteKeyStore) -> dict[tuple[str, str], tuple[int, ...]]:
    return {
        (r.key_name, r.model): (
            r.requests, r.prompt_tokens, r.completion_tokens, r.errors, r.rejections
        )
        for r in store.usage()
    }  # fmt: skip


def test_buckets_sum_to_the_totals(store: SqliteKeyStore) -> None:
    alice, _ = store.create_key(KeySpec("alice"))
    bob, _ = store.create_key(KeySpec("bob"))
    store.record_usage(alice.key_id, UsageRecord("m1", 10, 5))
    store.record_usage(alice.key_id, UsageRecord("m2", 3, 1, is_error=True))
    store.record_usage(bob.key_id, UsageRecord("m1", 7, 2))
    store.record_rejection(bob.key_id, "m1")
    assert sums(store, "hour") == sums(store, "day") == totals(store)
    assert totals(store)[("bob", "m1")] == (1, 7, 2, 0, 1)
    hours = {row.start for row in store.bucketed_usage("hour", 0)}
    assert hours == {int(time.time()) // 3600 * 3600}


def test_an_older_store_gets_its_totals_as_buckets_once(tmp_path: Path) -> None:
    path = tmp_path / "llmserve.db"
    old = SqliteKeyStore(path)
    key, _ = old.create_key(KeySpec("alice"))
    old.record_usage(key.key_id, UsageRecord("m1", 10, 5))
    old.close()
    with sqlite3.connect(path) as db:  # as a store from before the bucket table
        db.execute("DROP TABLE usage_buckets")
    for _ in range(2):  # the second open must not add the totals again
        store = SqliteKeyStore(path)
        assert sums(store, "day") == totals(store) == {("alice", "m1"): (1, 10, 5, 0, 0)}
        store.close()


def test_limits_change_on_the_active_key(store: SqliteKeyStore) -> None:
    store.create_key(KeySpec("alice", rpm=10))
    key = store.update_limits("alice", {"max_concurrency": 4, "rpm": None, "tpm": 99})
    assert (key.max_concurrency, key.rpm, key.tpm) == (4, None, 99)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, 1_000_000 - 48 * 3600),
        ("1700000000", 1_700_000_000),
        ("24h", 1_000_000 - 86400),
        ("2026-12-01", 1_796_083_200),
        ("2026-12-01T08:00:00Z", 1_796_112_000),
        ("2026-12-01T09:00:00+01:00", 1_796_112_000),
    ],
)
def test_since_reads_seconds_durations_and_dates(text: str | None, expected: int) -> None:
    assert parse_since(text, "hour", now=1_000_000) == expected


def test_since_that_cannot_be_read_names_the_field() -> None:
    with pytest.raises(InvalidRequestError, match="`since` must be unix seconds") as caught:
        parse_since("yesterday", "day")
    assert caught.value.param == "since"


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = fake_server_config(tmp_path, AuthConfig(admin_key=ADMIN_KEY))
    app = create_app(config, {MODEL: FakeBackend(MODEL)}, build_gatekeeper(config))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_usage_buckets_over_http_equal_the_totals(admin: httpx.AsyncClient) -> None:
    created = await admin.post("/admin/keys", json={"name": "bob"}, headers=auth(ADMIN_KEY))
    secret = created.json()["key"]
    for _ in range(2):
        chat = await admin.post(
            "/v1/chat/completions", json=chat_body(stream=False), headers=auth(secret)
        )
        assert chat.status_code == 200
    total = (await admin.get("/admin/usage", headers=auth(ADMIN_KEY))).json()["data"]
    hourly = await admin.get(
        "/admin/usage", params={"key": "bob", "bucket": "hour"}, headers=auth(ADMIN_KEY)
    )
    body = hourly.json()
    assert body["bucket"] == "hour" and len(body["data"]) == 1
    assert body["data"][0]["total_tokens"] == total[0]["total_tokens"] > 0
    assert body["data"][0]["requests"] == total[0]["requests"] == 2
    bad = await admin.get("/admin/usage?bucket=minute", headers=auth(ADMIN_KEY))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "bucket"
    assert (await admin.get("/admin/usage?bucket=hour")).status_code == 401


async def test_limits_edited_over_http_apply_to_the_next_request(
    admin: httpx.AsyncClient,
) -> None:
    created = await admin.post("/admin/keys", json={"name": "carol"}, headers=auth(ADMIN_KEY))
    secret = created.json()["key"]
    first = await admin.post(
        "/v1/chat/completions", json=chat_body(stream=False), headers=auth(secret)
    )
    assert first.status_code == 200
    edited = await admin.patch("/admin/keys/carol", json={"rpm": 1}, headers=auth(ADMIN_KEY))
    assert edited.status_code == 200 and edited.json()["rpm"] == 1
    refused = await admin.post(
        "/v1/chat/completions", json=chat_body(stream=False), headers=auth(secret)
    )
    assert refused.status_code == 429
    missing = await admin.patch("/admin/keys/nobody", json={"rpm": 1}, headers=auth(ADMIN_KEY))
    assert missing.status_code == 404
    zero = await admin.patch("/admin/keys/carol", json={"tpm": 0}, headers=auth(ADMIN_KEY))
    assert zero.status_code == 400 and zero.json()["error"]["param"] == "tpm"

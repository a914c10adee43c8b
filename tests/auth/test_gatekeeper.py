"""KeyGatekeeper: who may call, exact in-flight limits, RPM/TPM windows, usage on release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from llmserve.auth.base import UsageRecord
from llmserve.auth.factory import build_limit_state
from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.keys import KeySpec
from llmserve.auth.limits import Limits
from llmserve.auth.store import SqliteKeyStore
from llmserve.config import AuthConfig
from llmserve.errors import AuthenticationError, RateLimitError


@pytest.fixture(params=["sqlite", "redis"])
async def gatekeeper(
    request: pytest.FixtureRequest, store: SqliteKeyStore
) -> AsyncIterator[KeyGatekeeper]:
    """A gatekeeper over `store`, with in-process limits or Redis ones."""
    state = "in-process" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    config = AuthConfig(limit_store=state, lease_seconds=2.0)
    keeper = KeyGatekeeper(store, build_limit_state(config), config)
    yield keeper
    await keeper.close()


async def test_no_keys_means_anonymous(gatekeeper: KeyGatekeeper) -> None:
    principal = await gatekeeper.authenticate(None)
    assert principal.is_anonymous and principal.can_use_model("anything")
    slot = await gatekeeper.acquire(principal, "m", 10)
    assert slot.headers == {}
    await slot.release(UsageRecord("m", 10, 2))


async def test_missing_unknown_revoked_and_expired_keys_get_401(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, revoked = store.create_key(KeySpec("old"))
    store.revoke("old")
    _, expired = store.create_key(KeySpec("short", expires_in_s=0.2))
    await asyncio.sleep(0.3)
    cases = {
        None: "You didn't provide an API key",
        "Bearer lls-wrongwrongwrongwrong": "Incorrect API key provided: lls-wr********rong.",
        f"Bearer {revoked}": "(this key was revoked)",
        f"Bearer {expired}": "(this key was expired)",
    }
    for header, text in cases.items():
        with pytest.raises(AuthenticationError) as info:
            await gatekeeper.authenticate(header)
        assert text in info.value.message
        assert info.value.to_body()["error"]["code"] == "invalid_api_key"
        assert revoked not in info.value.message and expired not in info.value.message


async def test_listing_answers_none_for_any_unknown_bearer(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, secret = store.create_key(KeySpec("alice", allowed_models=frozenset({"m1"})))
    assert await gatekeeper.authenticate_for_listing("Bearer **********") is None
    principal = await gatekeeper.authenticate_for_listing(f"Bearer {secret}")
    assert principal is not None and principal.name == "alice"
    assert principal.can_use_model("m1") and not principal.can_use_model("m2")


async def test_burst_never_exceeds_concurrency_limit(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, secret = store.create_key(KeySpec("alice", max_concurrency=5))
    principal = await gatekeeper.authenticate(f"Bearer {secret}")
    results = await asyncio.gather(
        *(gatekeeper.acquire(principal, "m", 1) for _ in range(200)), return_exceptions=True
    )
    slots = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, RateLimitError)]
    assert len(slots) == 5 and len(errors) == 195
    assert await gatekeeper.num_in_flight(principal.key_id) == 5
    assert errors[0].retry_after_s > 0
    assert errors[0].headers["x-ratelimit-remaining-concurrency"] == "0"
    assert "the limit is 5 concurrent requests" in errors[0].message
    for slot in slots:
        await slot.release(UsageRecord("m", 1, 1))
        await slot.release(UsageRecord("m", 1, 1))  # idempotent
    assert await gatekeeper.num_in_flight(principal.key_id) == 0
    again = [await gatekeeper.acquire(principal, "m", 1) for _ in range(5)]
    assert len(again) == 5
    [row] = await gatekeeper.usage("alice")
    assert (row.requests, row.rejections, row.prompt_tokens) == (5, 195, 5)


async def test_usage_is_written_at_admission_and_completed_on_release(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, secret = store.create_key(KeySpec("alice"))
    principal = await gatekeeper.authenticate(f"Bearer {secret}")
    slot = await gatekeeper.acquire(principal, "m", 50)
    slot.report(UsageRecord("m", 12, 0))  # admitted: counted at once, before any token
    [row] = await gatekeeper.usage("alice")
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (1, 12, 0)
    slot.report(UsageRecord("m", 12, 3))  # running: written within a second, or at release
    await slot.release(UsageRecord("m", 12, 7, is_error=True))
    slot.report(UsageRecord("m", 12, 9))  # too late: the request ended
    [row] = await gatekeeper.usage("alice")
    assert (row.requests, row.prompt_tokens, row.completion_tokens, row.errors) == (1, 12, 7, 1)


async def test_rpm_limit_gives_429_with_openai_headers(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, secret = store.create_key(KeySpec("alice", rpm=2))
    principal = await gatekeeper.authenticate(f"Bearer {secret}")
    first = await gatekeeper.acquire(principal, "m", 1)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    await first.release(UsageRecord("m", 1, 0))
    await (await gatekeeper.acquire(principal, "m", 1)).release(UsageRecord("m", 1, 0))
    with pytest.raises(RateLimitError) as info:
        await gatekeeper.acquire(principal, "m", 1)
    error = info.value
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"].endswith("s")
    assert 0 < error.retry_after_s <= 60
    assert "Rate limit reached for requests per min (RPM)" in error.message
    assert error.to_body()["error"]["type"] == "requests"


async def test_tpm_limit_counts_real_usage(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, secret = store.create_key(KeySpec("alice", tpm=100))
    principal = await gatekeeper.authenticate(f"Bearer {secret}")
    slot = await gatekeeper.acquire(principal, "m", 90)  # estimate: prompt + max_tokens
    assert slot.headers["x-ratelimit-remaining-tokens"] == "10"
    await slot.release(UsageRecord("m", 20, 10))  # the real cost was 30
    second = await gatekeeper.acquire(principal, "m", 60)
    assert second.headers["x-ratelimit-remaining-tokens"] == "10"
    with pytest.raises(RateLimitError) as info:
        await gatekeeper.acquire(principal, "m", 20)
    assert info.value.to_body()["error"]["type"] == "tokens"
    assert "x-ratelimit-reset-tokens" in info.value.headers


async def test_release_during_cancellation_still_frees_the_slot(
    gatekeeper: KeyGatekeeper, store: SqliteKeyStore
) -> None:
    _, secret = store.create_key(KeySpec("alice", max_concurrency=1))
    principal = await gatekeeper.authenticate(f"Bearer {secret}")
    holding = asyncio.Event()

    async def hold() -> None:
        slot = await gatekeeper.acquire(principal, "m", 1)
        try:
            holding.set()
            await asyncio.sleep(60)
        finally:
            await slot.release(UsageRecord("m", 1, 0, is_error=True))

    task = asyncio.create_task(hold())
    await holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gatekeeper.num_in_flight(principal.key_id) == 0
    [row] = await gatekeeper.usage("alice")
    assert (row.requests, row.errors) == (1, 1)


async def test_redis_leases_are_renewed_while_held(redis_url: str, store: SqliteKeyStore) -> None:
    config = AuthConfig(limit_store=redis_url, lease_seconds=0.6)
    keeper = KeyGatekeeper(store, build_limit_state(config), config)
    _, secret = store.create_key(KeySpec("alice", max_concurrency=2))
    principal = await keeper.authenticate(f"Bearer {secret}")
    slot = await keeper.acquire(principal, "m", 1)
    await asyncio.sleep(1.5)  # more than two lease times: only the heartbeat keeps it
    assert await keeper.num_in_flight(principal.key_id) == 1
    await slot.release(UsageRecord("m", 1, 1))
    assert await keeper.num_in_flight(principal.key_id) == 0
    await keeper.close()


async def test_redis_lease_expires_without_heartbeat(redis_url: str, store: SqliteKeyStore) -> None:
    config = AuthConfig(limit_store=redis_url, lease_seconds=0.5)
    state = build_limit_state(config)
    other = build_limit_state(replace(config))
    _, secret = store.create_key(KeySpec("alice", max_concurrency=1))
    keeper = KeyGatekeeper(store, state, config)
    principal = await keeper.authenticate(f"Bearer {secret}")
    admission = await other.acquire(principal.key_id, "dead-process", Limits(max_concurrency=1), 1)
    assert admission.is_admitted
    with pytest.raises(RateLimitError):
        await keeper.acquire(principal, "m", 1)
    await asyncio.sleep(0.7)
    slot = await keeper.acquire(principal, "m", 1)
    await slot.release(UsageRecord("m", 1, 1))
    await other.close()
    await keeper.close()

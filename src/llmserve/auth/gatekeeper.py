"""`KeyGatekeeper`: the server's `Gatekeeper`: keys from the store, limits from the state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Mapping

from llmserve.auth.base import ANONYMOUS_KEY_ID, Principal, UsageRecord
from llmserve.auth.headers import rate_limit_error, ratelimit_headers
from llmserve.auth.key_store import KeyStore, second_connection, store_problem
from llmserve.auth.keys import ApiKey, KeySpec, hash_secret, hashes_match, mask
from llmserve.auth.limits import Admission, Limits, LimitState
from llmserve.auth.store import UsageDelta, UsageRow
from llmserve.auth.usage_buckets import Bucket, UsageBucketRow
from llmserve.auth.usage_writer import RequestUsage, UsageWriter
from llmserve.config import AuthConfig
from llmserve.errors import AuthenticationError, PermissionDeniedError

ANONYMOUS = Principal(key_id=ANONYMOUS_KEY_ID, name="anonymous")
FLUSH_TIMEOUT_S = 15.0  # how long reading or closing waits for pending usage to be written
_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def admin_key(config: AuthConfig) -> str | None:
    """The configured admin key, from the config or the environment."""
    return config.admin_key or os.environ.get("LLMSERVE_ADMIN_KEY") or None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class KeySlot:
    """One admitted request; `release` frees the slot and records usage exactly once."""

    def __init__(
        self, gatekeeper: KeyGatekeeper, principal: Principal, lease_id: str, tokens: int,
        admission: Admission, headers: Mapping[str, str],
    ) -> None:  # fmt: skip
        self._gatekeeper = gatekeeper
        self.principal = principal
        self.lease_id = lease_id
        self.estimated_tokens = tokens
        self.admission = admission
        self.usage = RequestUsage(gatekeeper.usage_writer, principal.key_id)
        self._headers = dict(headers)
        self._is_released = False

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    def report(self, usage: UsageRecord) -> None:
        if not self._is_released:
            self.usage.update(usage)

    async def release(self, usage: UsageRecord) -> None:
        if self._is_released:
            return
        self._is_released = True
        await self._gatekeeper.finish(self, usage)


class KeyGatekeeper:
    """Authenticates against a `KeyStore` and admits within a `LimitState`."""

    def __init__(self, store: KeyStore, state: LimitState, config: AuthConfig) -> None:
        self.store = store
        self.state = state
        self.config = config
        # NOTE: a second connection, written from its own thread: the loop never waits on SQLite.
        self.usage_writer = UsageWriter(second_connection(store))
        self._key_id_to_key: dict[str, ApiKey] = {}  # refreshed by every authenticate
        self._key_to_leases: dict[str, set[str]] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        has_keys, key = await asyncio.to_thread(self._find_key, token)
        if not has_keys:
            return ANONYMOUS  # open server (loopback only unless --no-auth: see policy.py)
        if token is None:
            raise AuthenticationError(_NO_KEY_MESSAGE)
        if key is not None:
            self._key_id_to_key[key.key_id] = key
        if key is None or not key.is_usable():
            state = "" if key is None else f" (this key was {key.status()})"
            raise AuthenticationError(f"Incorrect API key provided: {mask(token)}{state}.")
        return self._principal(key)

    async def authenticate_for_listing(self, authorization: str | None) -> Principal | None:
        try:
            return await self.authenticate(authorization)
        except AuthenticationError:
            return None

    async def authenticate_admin(self, authorization: str | None) -> None:
        expected = admin_key(self.config)
        if expected is None:
            raise PermissionDeniedError(
                "The admin API is disabled: set LLMSERVE_ADMIN_KEY (or auth.admin_key) to "
                "enable it."
            )
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationError("The admin API needs the admin key as a Bearer token.")
        if hashes_match(hash_secret(token), hash_secret(expected)):
            return
        if await asyncio.to_thread(self.store.find_by_hash, hash_secret(token)) is not None:
            raise PermissionDeniedError("This API key may not use the admin API.")
        raise AuthenticationError("Incorrect admin key provided.")

    async def acquire(self, principal: Principal, model: str, estimated_tokens: int) -> KeySlot:
        limits = self._limits(principal)
        lease_id = secrets.token_hex(8)
        admission = await self.state.acquire(principal.key_id, lease_id, limits, estimated_tokens)
        if not admission.is_admitted:
            self.usage_writer.add(principal.key_id, model, UsageDelta(rejections=1))
            raise rate_limit_error(principal.name, limits, admission, estimated_tokens)
        if self.state.needs_renewal:
            self._key_to_leases.setdefault(principal.key_id, set()).add(lease_id)
            self._start_heartbeat()
        headers = ratelimit_headers(limits, admission)
        return KeySlot(self, principal, lease_id, estimated_tokens, admission, headers)

    async def finish(self, slot: KeySlot, usage: UsageRecord) -> None:
        """Free `slot` and record its usage; runs to the end even if the caller is cancelled."""
        key_id = slot.principal.key_id
        self._key_to_leases.get(key_id, set()).discard(slot.lease_id)  # heartbeat stops first
        try:
            await asyncio.shield(self._free(slot, usage))
        finally:
            slot.usage.finish(usage)  # queued for the writer thread

    def record_usage(self, key_id: str, usage: UsageRecord) -> None:
        RequestUsage(self.usage_writer, key_id).finish(usage)  # queued for the writer thread

    async def num_in_flight(self, key_id: str) -> int:
        """Requests the key has in flight now (across processes with Redis state)."""
        return await self.state.num_in_flight(key_id)

    async def dependency_problem(self) -> str | None:
        problem = await asyncio.to_thread(store_problem, self.store)  # PostgreSQL down
        return problem or await self.state.dependency_problem()

    async def usage(self, name: str | None = None) -> list[UsageRow]:
        """Usage totals (see `SqliteKeyStore.usage`), including every request released so far."""
        await asyncio.to_thread(self.usage_writer.flush, FLUSH_TIMEOUT_S)
        return await asyncio.to_thread(self.store.usage, name)

    async def bucketed_usage(
        self, bucket: Bucket, since: int, name: str | None = None
    ) -> list[UsageBucketRow]:
        """Usage per hour or day (see `SqliteKeyStore.bucketed_usage`), flushed first."""
        await asyncio.to_thread(self.usage_writer.flush, FLUSH_TIMEOUT_S)
        return await asyncio.to_thread(self.store.bucketed_usage, bucket, since, name)

    async def update_limits(self, name: str, limits: Mapping[str, int | None]) -> ApiKey:
        """`SqliteKeyStore.update_limits`; the key's next request is admitted under them."""
        key = await asyncio.to_thread(self.store.update_limits, name, limits)
        if key.key_id in self._key_id_to_key:
            self._key_id_to_key[key.key_id] = key
        return key

    async def create_key(self, spec: KeySpec) -> tuple[ApiKey, str]:
        """`SqliteKeyStore.create_key`, off the event loop."""
        return await asyncio.to_thread(self.store.create_key, spec)

    async def revoke_key(self, name: str) -> ApiKey:
        """`SqliteKeyStore.revoke`, off the event loop."""
        return await asyncio.to_thread(self.store.revoke, name)

    async def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, off the event loop."""
        return await asyncio.to_thread(self.store.list_keys)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.state.close()
        await asyncio.to_thread(self.usage_writer.close, FLUSH_TIMEOUT_S)
        self.store.close()

    async def _free(self, slot: KeySlot, usage: UsageRecord) -> None:
        key_id = slot.principal.key_id
        await self.state.release(key_id, slot.lease_id)
        delta = usage.prompt_tokens + usage.completion_tokens - slot.estimated_tokens
        if self._limits(slot.principal).tpm is not None and delta:
            await self.state.add_tokens(key_id, slot.admission.window_id, delta)

    def _find_key(self, token: str | None) -> tuple[bool, ApiKey | None]:
        """Whether any key exists, and the key of `token` (runs in a worker thread)."""
        has_keys = self.store.has_keys()
        if not has_keys or token is None:
            return has_keys, None
        token_hash = hash_secret(token)
        key = self.store.find_by_hash(token_hash)
        return True, key if key is not None and hashes_match(key.key_hash, token_hash) else None

    def _principal(self, key: ApiKey) -> Principal:
        return Principal(
            key_id=key.key_id,
            name=key.name,
            allowed_models=key.allowed_models,
            max_concurrency=key.max_concurrency,
            cache_group=key.cache_group,
            max_storage_mb=key.max_storage_mb,
        )

    def _limits(self, principal: Principal) -> Limits:
        key = self._key_id_to_key.get(principal.key_id)
        if key is None:
            return Limits(max_concurrency=principal.max_concurrency)
        return Limits(max_concurrency=key.max_concurrency, rpm=key.rpm, tpm=key.tpm)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew_forever(), name="lease-heartbeat")

    async def _renew_forever(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            held = {key_id: set(leases) for key_id, leases in self._key_to_leases.items() if leases}
            await self.state.renew(held)

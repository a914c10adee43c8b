"""Per-key limits shared by several server processes through Redis.

Slots are leases in a sorted set per key (member: lease id, score: expiry time from Redis' own
clock). One Lua script prunes expired leases, checks the slot count and the minute window, and
takes the slot, so two processes can never exceed a key's limit together. A holder renews its
leases with a heartbeat; a killed process stops renewing and its slots free within the lease time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llmserve.auth.limits import WINDOW_SECONDS, Admission, Limits, Verdict
from llmserve.errors import OverloadedError

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 2.0  # a Redis that does not answer a PING by then counts as down
READINESS_TTL_S = 1.0  # /health pings Redis at most this often

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease_s, max_conc, rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
local window = math.floor(now / tonumber(ARGV[7]))
local used_r, used_t = 0, 0
if tonumber(redis.call('HGET', KEYS[2], 'w') or -1) == window then
  used_r = tonumber(redis.call('HGET', KEYS[2], 'r') or 0)
  used_t = tonumber(redis.call('HGET', KEYS[2], 't') or 0)
end
local verdict = 'ok'
if max_conc > 0 and count >= max_conc then verdict = 'concurrency'
elseif rpm > 0 and used_r + 1 > rpm then verdict = 'requests'
elseif tpm > 0 and used_t + tokens > tpm then verdict = 'tokens'
end
if verdict == 'ok' then
  redis.call('ZADD', KEYS[1], now + lease_s, ARGV[6])
  redis.call('EXPIRE', KEYS[1], math.ceil(lease_s) + 60)
  count = count + 1
  used_r = used_r + 1
  used_t = used_t + tokens
  redis.call('HSET', KEYS[2], 'w', window, 'r', used_r, 't', used_t)
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[7])) * 2)
end
local reset_ms = math.floor(((window + 1) * tonumber(ARGV[7]) - now) * 1000)
return {verdict, count, used_r, used_t, reset_ms, window}
"""

_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 60)
return 0
"""

_ADD_TOKENS = """
if tonumber(redis.call('HGET', KEYS[1], 'w') or -1) == tonumber(ARGV[1]) then
  local t = tonumber(redis.call('HGET', KEYS[1], 't') or 0) + tonumber(ARGV[2])
  if t < 0 then t = 0 end
  redis.call('HSET', KEYS[1], 't', t)
end
return 0
"""


class RedisUnreachableError(ValueError):
    """`--state redis://...` names a Redis that does not answer (a start-up check)."""


def redacted(url: str) -> str:
    """`url` without its user name and password, for messages and logs."""
    parts = urlsplit(url)
    host_port = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host_port, parts.path, "", ""))


def unreachable(url: str, exc: Exception) -> str:
    """What is wrong when Redis at `url` did not answer."""
    detail = str(exc) or f"no answer within {PING_TIMEOUT_S:g} s"
    return f"cannot reach Redis at {redacted(url)} ({detail})"


def check_redis(url: str, timeout_s: float = PING_TIMEOUT_S) -> None:
    """Ping Redis once, synchronously (before the server starts); raise RedisUnreachableError."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        try:
            client.ping()
        finally:
            client.close()
    except ValueError as exc:
        raise RedisUnreachableError(f"{redacted(url)} is not a valid Redis URL ({exc})") from None
    except RedisError as exc:
        raise RedisUnreachableError(
            f"{unreachable(url, exc)}: start redis-server there, or fix --state (auth.limit_store)"
        ) from None


class RedisLimitState:
    """Limits in Redis at `url`, shared by every process that uses the same URL and prefix."""

    needs_renewal = True

    def __init__(self, url: str, *, lease_seconds: float, prefix: str = "llmserve") -> None:
        # A blocking pool: a burst waits for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=32, timeout=30, socket_connect_timeout=PING_TIMEOUT_S
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._url = url
        self._problem: str | None = None
        self._problem_checked_until = 0.0  # monotonic time; pings are cached until then
        self._lease_seconds = lease_seconds
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._add_tokens = self._redis.register_script(_ADD_TOKENS)

    def _leases_key(self, key_id: str) -> str:
        return f"{self._prefix}:leases:{key_id}"

    def _window_key(self, key_id: str) -> str:
        return f"{self._prefix}:window:{key_id}"

    async def acquire(self, key_id: str, lease_id: str, limits: Limits, tokens: int) -> Admission:
        keys = [self._leases_key(key_id), self._window_key(key_id)]
        args: list[str | float] = [self._lease_seconds, limits.max_concurrency or 0]
        args += [limits.rpm or 0, limits.tpm or 0, tokens, lease_id, WINDOW_SECONDS]
        try:
            reply = cast(list[Any], await self._acquire(keys=keys, args=args))
        except RedisError as exc:  # a 503 the client may retry, never a 500
            logger.warning("could not admit a request of key %s: %s", key_id, exc)
            raise OverloadedError(
                "The server cannot reach its rate-limit store (Redis); please retry shortly."
            ) from None
        verdict = cast(Verdict, reply[0].decode() if isinstance(reply[0], bytes) else reply[0])
        count, used_r, used_t, reset_ms, window = (int(value) for value in reply[1:])
        return Admission(verdict, count, used_r, used_t, reset_ms / 1000, window)

    async def release(self, key_id: str, lease_id: str) -> None:
        try:
            await self._redis.zrem(self._leases_key(key_id), lease_id)
        except RedisError as exc:  # the lease expires by itself within lease_seconds
            logger.warning("could not release a slot of key %s: %s", key_id, exc)

    async def renew(self, key_to_leases: Mapping[str, set[str]]) -> None:
        try:
            for key_id, leases in key_to_leases.items():
                if leases:
                    args: list[str | float] = [self._lease_seconds, *sorted(leases)]
                    await self._renew(keys=[self._leases_key(key_id)], args=args)
        except RedisError as exc:  # retried at the next heartbeat
            logger.warning("could not renew slot leases: %s", exc)

    async def add_tokens(self, key_id: str, window_id: int, delta: int) -> None:
        try:
            await self._add_tokens(keys=[self._window_key(key_id)], args=[window_id, delta])
        except RedisError as exc:  # the window only keeps the estimate made at admission
            logger.warning("could not correct the token count of key %s: %s", key_id, exc)

    async def num_in_flight(self, key_id: str) -> int:
        # Client clock: close enough for a listing; admission itself uses Redis' clock.
        return int(await self._redis.zcount(self._leases_key(key_id), f"({time.time()}", "+inf"))

    async def dependency_problem(self) -> str | None:
        """None while Redis answers a PING; pinged at most once per READINESS_TTL_S."""
        now = time.monotonic()
        if now < self._problem_checked_until:
            return self._problem
        self._problem_checked_until = now + READINESS_TTL_S  # callers meanwhile share this ping
        try:
            await asyncio.wait_for(self._redis.ping(), PING_TIMEOUT_S)
            self._problem = None
        except (RedisError, OSError, TimeoutError) as exc:
            self._problem = unreachable(self._url, exc)
        return self._problem

    async def close(self) -> None:
        await self._redis.aclose()

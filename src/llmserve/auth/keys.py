"""API keys: how they are made, hashed, masked and described. A key's secret is never stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal, TypedDict

KEY_PREFIX = "lls-"
MAX_NAME_LENGTH = 128
MAX_MODEL_NAME_LENGTH = 256
MAX_LIMIT = 2**31 - 1  # max_concurrency, rpm, tpm: beyond it a limit means nothing
MAX_EXPIRES_S = 10 * 366 * 86400  # ten years
_DURATION = re.compile(r"^(\d{1,12})([smhdw])$")
_UNIT_TO_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class KeySpecError(ValueError):
    """A key setting that cannot be stored; `field` names it as the admin API does."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored: its settings and the sha256 of its secret, never the secret."""

    key_id: str
    name: str
    key_hash: str
    hint: str  # "lls-...wxyz": enough to tell keys apart in a listing
    created_at: float
    expires_at: float | None = None
    disabled: bool = False
    allowed_models: frozenset[str] | None = None  # None: every model
    max_concurrency: int = 30
    rpm: int | None = None
    tpm: int | None = None
    cache_group: str | None = None  # keys of one cache group share their prefix cache
    max_storage_mb: int | None = None  # files the key may keep; None: jobs.max_storage_mb_per_key

    def is_expired(self, now: float | None = None) -> bool:
        """True once the expiry time has passed."""
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def is_usable(self, now: float | None = None) -> bool:
        """True when the key is neither revoked nor expired."""
        return not self.disabled and not self.is_expired(now)

    def status(self, now: float | None = None) -> str:
        """ "active", "revoked" or "expired"."""
        if self.disabled:
            return "revoked"
        return "expired" if self.is_expired(now) else "active"


@dataclass(frozen=True)
class KeySpec:
    """What a caller asks for when creating a key."""

    name: str
    max_concurrency: int = 30
    allowed_models: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    expires_in_s: float | None = None
    cache_group: str | None = None  # None: the key's own prefix-cache namespace
    max_storage_mb: int | None = None  # None: the server's jobs.max_storage_mb_per_key

    def __post_init__(self) -> None:
        if self.max_storage_mb is not None:
            check_limit("max_storage_mb", self.max_storage_mb)
        check_name("name", self.name, MAX_NAME_LENGTH)
        if self.cache_group is not None:
            check_name("cache_group", self.cache_group, MAX_NAME_LENGTH)
            if "|" in self.cache_group:  # NOTE: "|" separates a salt in a cache namespace
                raise KeySpecError("cache_group", "must not contain '|'")
        check_limit("max_concurrency", self.max_concurrency)
        for field_name in ("rpm", "tpm"):
            value = getattr(self, field_name)
            if value is not None:
                check_limit(field_name, value)
        if self.expires_in_s is not None and not 0 < self.expires_in_s <= MAX_EXPIRES_S:
            raise KeySpecError("expires", "must be a positive duration of at most 10 years")
        if self.allowed_models is not None:
            check_models(self.allowed_models)


def check_name(field: str, name: str, max_length: int) -> None:
    """A name is 1 to `max_length` printable characters, without spaces at either end."""
    if not 1 <= len(name) <= max_length:
        raise KeySpecError(field, f"must be 1 to {max_length} characters long")
    if not name.isprintable():
        raise KeySpecError(field, "must contain only printable characters")
    if name != name.strip():
        raise KeySpecError(field, "must not start or end with a space")


def check_limit(field: str, value: int) -> None:
    """A limit is a whole number from 1 to MAX_LIMIT (a limit of 0 would admit nobody)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeySpecError(field, "must be a whole number")
    if not 1 <= value <= MAX_LIMIT:
        raise KeySpecError(field, f"must be at least 1 and at most {MAX_LIMIT}")


def check_models(models: frozenset[str]) -> None:
    """An allow-list names at least one model; "no list" (None), not an empty one, means all."""
    if not models:
        raise KeySpecError(
            "models", "must name at least one model (leave it out to allow every model)"
        )
    for model in models:
        check_name("models", model, MAX_MODEL_NAME_LENGTH)


def generate_secret() -> str:
    """A new key: the `lls-` prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """sha256 hex of the secret: enough for 256-bit random keys (no dictionary to guess from)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def hashes_match(a: str, b: str) -> bool:
    """Constant-time comparison of two hashes."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def new_key_id() -> str:
    """A stable, public id for a key (used in usage rows and as the scheduler tenant)."""
    return "key_" + secrets.token_hex(8)


def mask(secret: str) -> str:
    """What an error message may show of a presented key: its start and last four characters."""
    if len(secret) <= 12:
        return "*" * len(secret)
    return f"{secret[:6]}{'*' * 8}{secret[-4:]}"


def hint_for(secret: str) -> str:
    """The stored hint of a key: the prefix and its last four characters."""
    return f"{KEY_PREFIX}...{secret[-4:]}"


def parse_duration(text: str) -> float:
    """Seconds in "90s", "15m", "12h", "30d" or "2w"; raises ValueError otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h, d or w, e.g. 30d")
    return float(int(match.group(1)) * _UNIT_TO_SECONDS[match.group(2)])


def parse_models(text: str | None) -> frozenset[str] | None:
    """A comma-separated model list; None (not given) means every model, an empty one is wrong."""
    if text is None:
        return None
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    check_models(names)
    return names


class KeyObject(TypedDict):
    """A key as the admin API and `llmserve keys list --json` show it."""

    id: str
    object: Literal["api_key"]
    name: str
    hint: str
    status: str
    created_at: int
    expires_at: int | None
    models: list[str] | None
    max_concurrency: int
    rpm: int | None
    tpm: int | None
    cache_group: str | None
    max_storage_mb: int | None


def describe_key(key: ApiKey) -> KeyObject:
    """A key as the admin API and `llmserve keys list --json` show it (never its secret)."""
    return {
        "id": key.key_id,
        "object": "api_key",
        "name": key.name,
        "hint": key.hint,
        "status": key.status(),
        "created_at": int(key.created_at),
        "expires_at": None if key.expires_at is None else int(key.expires_at),
        "models": None if key.allowed_models is None else sorted(key.allowed_models),
        "max_concurrency": key.max_concurrency,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "cache_group": key.cache_group,
        "max_storage_mb": key.max_storage_mb,
    }

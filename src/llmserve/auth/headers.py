"""OpenAI's `x-ratelimit-*` headers and the text of 429 errors, from one `Admission`."""

from __future__ import annotations

import math

from llmserve.auth.limits import Admission, Limits
from llmserve.errors import RateLimitError

CONCURRENCY_RETRY_S = 1.0  # a slot frees when any request of the key ends: try again soon


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{int(rest)}s"


def ratelimit_headers(limits: Limits, admission: Admission) -> dict[str, str]:
    """The x-ratelimit-* headers for the limits this key has."""
    headers: dict[str, str] = {}
    reset = format_reset(admission.window_reset_s)
    if limits.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(
            max(0, limits.rpm - admission.requests_used)
        )
        headers["x-ratelimit-reset-requests"] = reset
    if limits.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - admission.tokens_used))
        headers["x-ratelimit-reset-tokens"] = reset
    if limits.max_concurrency is not None:
        remaining = max(0, limits.max_concurrency - admission.num_in_flight)
        headers["x-ratelimit-limit-concurrency"] = str(limits.max_concurrency)
        headers["x-ratelimit-remaining-concurrency"] = str(remaining)
    return headers


def rate_limit_error(
    key_name: str, limits: Limits, admission: Admission, tokens: int
) -> RateLimitError:
    """The 429 for a refused admission, with the limit it broke and when to retry."""
    headers = ratelimit_headers(limits, admission)
    if admission.verdict == "concurrency":
        message = (
            f"Too many requests in flight for API key '{key_name}': the limit is "
            f"{limits.max_concurrency} concurrent requests. Retry when one of them finishes."
        )
        return RateLimitError(message, retry_after_s=CONCURRENCY_RETRY_S, headers=headers)
    retry_s = round(admission.window_reset_s, 3)
    if admission.verdict == "requests":
        message = (
            f"Rate limit reached for requests per min (RPM) on API key '{key_name}': "
            f"Limit {limits.rpm}, Used {admission.requests_used}, Requested 1. "
            f"Please try again in {format_reset(retry_s)}."
        )
        return RateLimitError(message, retry_after_s=retry_s, headers=headers)
    message = (
        f"Rate limit reached for tokens per min (TPM) on API key '{key_name}': "
        f"Limit {limits.tpm}, Used {admission.tokens_used}, Requested {tokens}. "
        f"Please try again in {format_reset(retry_s)}."
    )
    error = RateLimitError(message, retry_after_s=retry_s, headers=headers)
    error.error_type = "tokens"  # OpenAI names the limit that was hit in `type`
    return error

"""`PromptCacheFields`: the prompt-caching fields of chat, completions and responses bodies.

- `cache_salt` (vLLM's field): starts a separate prefix-cache namespace inside the caller's, so
  requests with different salts (or none) never share cached blocks.
- `prompt_cache_key` (OpenAI's field): requests sharing it (in one namespace) are routed to the
  same engine replica, so a multi-replica deployment keeps their shared prefix cached.
"""

from __future__ import annotations

from pydantic import Field

from llmserve.serving.strict import StrictModel

MAX_CACHE_FIELD_LENGTH = 1024


class PromptCacheFields(StrictModel):
    """`cache_salt` and `prompt_cache_key`, both optional non-empty strings."""

    cache_salt: str | None = Field(default=None, min_length=1, max_length=MAX_CACHE_FIELD_LENGTH)
    prompt_cache_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_CACHE_FIELD_LENGTH
    )

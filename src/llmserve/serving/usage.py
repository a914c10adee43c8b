"""Token counts of one request as it runs, and OpenAI's `usage` object made from them."""

from __future__ import annotations

from dataclasses import dataclass

from llmserve.auth.base import UsageRecord
from llmserve.serving.wire import Usage


@dataclass
class UsageMeter:
    """Token counts of a request in progress; its caller records them against the key."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    is_error: bool = False

    def record(self) -> UsageRecord:
        """The usage record for the caller's slot."""
        return UsageRecord(self.model, self.prompt_tokens, self.completion_tokens, self.is_error)

    def usage(self) -> Usage:
        """OpenAI's `usage` object of chat and text completions."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

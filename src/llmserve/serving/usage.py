"""Token counts of one request as it runs, and OpenAI's `usage` object made from them."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmserve.auth.base import UsageRecord
from llmserve.serving.wire import Usage
from llmserve.types import GenerateOutput


@dataclass
class UsageMeter:
    """Token counts of a request in progress; its caller records them against the key."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    is_error: bool = False
    request_to_cached_tokens: dict[str, int] = field(default_factory=dict)
    request_to_cache_write_tokens: dict[str, int] = field(default_factory=dict)
    has_prediction: bool = False  # usage then reports the prediction tokens (OpenAI's details)
    # (request id, choice) -> prediction tokens it accepted and rejected so far
    choice_to_prediction_tokens: dict[tuple[str, int], tuple[int, int]] = field(
        default_factory=dict
    )

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens the engine found in its prefix cache (OpenAI's `cached_tokens`)."""
        return sum(self.request_to_cached_tokens.values())

    @property
    def cache_write_tokens(self) -> int:
        """Prompt tokens the engine newly wrote to its prefix cache (`cache_write_tokens`)."""
        return sum(self.request_to_cache_write_tokens.values())

    def count_cached_tokens(self, output: GenerateOutput) -> None:
        """Note what `output`'s prompt found cached."""
        # NOTE: a prompt is counted once however many choices it has, like `prompt_tokens`:
        # the first choice's figure is what this prompt saved.
        if output.index == 0:
            self.request_to_cached_tokens[output.request_id] = output.num_cached_tokens
            self.request_to_cache_write_tokens[output.request_id] = output.num_cache_write_tokens
        self.choice_to_prediction_tokens[(output.request_id, output.index)] = (
            output.num_accepted_prediction_tokens,
            output.num_rejected_prediction_tokens,
        )

    def record(self) -> UsageRecord:
        """The usage record for the caller's slot."""
        return UsageRecord(self.model, self.prompt_tokens, self.completion_tokens, self.is_error)

    def usage(self) -> Usage:
        """OpenAI's `usage` object of chat and text completions."""
        usage: Usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }
        if self.has_prediction:
            counts = self.choice_to_prediction_tokens.values()
            usage["completion_tokens_details"] = {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": sum(accepted for accepted, _ in counts),
                "rejected_prediction_tokens": sum(rejected for _, rejected in counts),
            }
        return usage

"""vLLM-compatible /tokenize and /detokenize schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llmserve.errors import InvalidRequestError
from llmserve.serving.schemas import Message, ModelRequest, TokenId


class TokenizeRequest(ModelRequest):
    """POST /tokenize: either `prompt`, or `messages` rendered with the chat template."""

    prompt: str | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = True

    def check(self) -> None:
        """Exactly one of `prompt` and `messages` must be set."""
        if (self.prompt is None) == (self.messages is None):
            raise InvalidRequestError(
                "Send exactly one of `prompt` and `messages`.", param="prompt"
            )


class DetokenizeRequest(ModelRequest):
    """POST /detokenize."""

    tokens: list[TokenId]

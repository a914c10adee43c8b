"""Where stored responses go: the `ResponseStore` protocol (the job store implements it).

A stored response keeps its conversation (every input and output message, instructions left
out) so that a later request with `previous_response_id` continues it without resending it.
"""

from __future__ import annotations

from typing import Protocol

from llmserve.serving.response_objects import ResponseObject
from llmserve.types import ChatMessage


class ResponseStore(Protocol):
    """Durable responses, each readable only by the key that made it."""

    def put(self, key_id: str, response: ResponseObject, conversation: list[ChatMessage]) -> None:
        """Store (or update) `response`; a response of another key is never replaced."""
        ...

    def conversation(self, key_id: str, response_id: str) -> list[ChatMessage] | None:
        """The messages of a stored response of `key_id` (its output last), or None."""
        ...

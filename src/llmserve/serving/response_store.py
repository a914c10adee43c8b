"""Where stored responses and conversations go: the `ResponseStore` and `ConversationStore`
protocols (the job store implements both).

A stored response keeps its conversation as items (every input and output item, instructions
left out) so that a later request with `previous_response_id` continues it without resending it.
Every method is a coroutine: a durable store does its I/O off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmserve.serving.response_items import Item
from llmserve.serving.response_objects import ResponseObject


class ResponseStore(Protocol):
    """Durable responses, each readable only by the key that made it."""

    async def put(
        self,
        key_id: str,
        response: ResponseObject,
        conversation: Sequence[Item],
        input_items: Sequence[Item],
    ) -> None:
        """Store (or update) `response`; a response of another key is never replaced."""
        ...

    async def conversation(self, key_id: str, response_id: str) -> list[Item] | None:
        """The items of a stored response of `key_id` (its output last), or None."""
        ...


class ConversationStore(Protocol):
    """Durable conversations (`/v1/conversations`), each readable only by the key that made it."""

    async def items(self, key_id: str, conversation_id: str) -> list[Item] | None:
        """Every item of the conversation, oldest first; None if `key_id` has no such one."""
        ...

    async def append(self, key_id: str, conversation_id: str, items: Sequence[Item]) -> None:
        """Add items at the end of the conversation."""
        ...

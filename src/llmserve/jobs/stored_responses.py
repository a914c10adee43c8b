"""`StoredResponses` and `StoredConversations`: the serving layer's `ResponseStore` and
`ConversationStore` on the durable job store, each call run in a worker thread (never SQLite on
the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from llmserve.jobs.store import JobStore, ResponseRecord
from llmserve.jobs.wire import StoredRequest
from llmserve.serving.response_items import Item, message_item, new_item_id
from llmserve.serving.response_objects import ResponseObject


class StoredResponses:
    """Implements `serving.response_store.ResponseStore` with a `JobStore`."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def put(
        self,
        key_id: str,
        response: ResponseObject,
        conversation: Sequence[Item],
        input_items: Sequence[Item],
    ) -> None:
        await asyncio.to_thread(self._put, key_id, response, conversation, input_items)

    async def conversation(self, key_id: str, response_id: str) -> list[Item] | None:
        return await asyncio.to_thread(self._conversation, key_id, response_id)

    def _put(
        self,
        key_id: str,
        response: ResponseObject,
        conversation: Sequence[Item],
        input_items: Sequence[Item],
    ) -> None:
        found = self.store.get_response(key_id, response["id"])
        request: StoredRequest = {
            **(found.request if found is not None else {}),
            "items": list(conversation),
            "input_items": list(input_items),
        }
        is_background = found is not None and found.is_background
        record = ResponseRecord(
            response["id"], key_id, response["status"], response, request, is_background
        )
        self.store.put_response(record)

    def _conversation(self, key_id: str, response_id: str) -> list[Item] | None:
        found = self.store.get_response(key_id, response_id)
        if found is None:
            return None
        if "items" in found.request:
            return list(found.request["items"])
        if "conversation" in found.request:  # stored by an earlier llmserve: [role, text] pairs
            return [_message(role, text) for role, text in found.request["conversation"]]
        return None


class StoredConversations:
    """Implements `serving.response_store.ConversationStore` with a `JobStore`."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def items(self, key_id: str, conversation_id: str) -> list[Item] | None:
        return await asyncio.to_thread(self.store.conversation_items, key_id, conversation_id)

    async def append(self, key_id: str, conversation_id: str, items: Sequence[Item]) -> None:
        await asyncio.to_thread(self.store.add_conversation_items, key_id, conversation_id, items)


def _message(role: str, text: str) -> Item:
    part = "output_text" if role == "assistant" else "input_text"
    return message_item(role, text, new_item_id("msg"), part)

"""`StoredResponses`: the serving layer's `ResponseStore` on the durable job store."""

from __future__ import annotations

from llmserve.jobs.store import JobStore, ResponseRecord
from llmserve.serving.response_objects import ResponseObject
from llmserve.types import ChatMessage


class StoredResponses:
    """Implements `serving.response_store.ResponseStore` with a `JobStore`.

    NOTE: called on the event loop when a response finishes; one small WAL commit.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def put(self, key_id: str, response: ResponseObject, conversation: list[ChatMessage]) -> None:
        found = self.store.get_response(key_id, response["id"])
        request = dict(found.request) if found is not None else {}
        request["conversation"] = [[m.role, m.content] for m in conversation]
        is_background = found is not None and found.is_background
        record = ResponseRecord(
            response["id"], key_id, response["status"], dict(response), request, is_background
        )
        self.store.put_response(record)

    def conversation(self, key_id: str, response_id: str) -> list[ChatMessage] | None:
        found = self.store.get_response(key_id, response_id)
        if found is None or "conversation" not in found.request:
            return None
        return [ChatMessage(role, content) for role, content in found.request["conversation"]]

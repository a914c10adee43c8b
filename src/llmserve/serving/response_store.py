"""Stored responses for GET /v1/responses/{id}: an in-memory, bounded LRU per server process.

NOTE: responses do not survive a restart and are not shared between workers; the durable job
store (SQLite in home) is the place for them once background responses arrive.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from llmserve.serving.response_objects import ResponseObject

DEFAULT_MAX_RESPONSES = 1024


class ResponseStore:
    """Keeps the latest `max_responses` responses, each readable only by the key that made it."""

    def __init__(self, max_responses: int = DEFAULT_MAX_RESPONSES) -> None:
        if max_responses < 1:
            raise ValueError("max_responses must be at least 1")
        self._max_responses = max_responses
        self._id_to_entry: OrderedDict[str, tuple[str, ResponseObject]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key_id: str, response: ResponseObject) -> None:
        """Store (or replace) `response` under its id, evicting the least recently used.

        Ids are server-made; still, an id stored by another key is never replaced (ValueError).
        """
        with self._lock:
            entry = self._id_to_entry.get(response["id"])
            if entry is not None and entry[0] != key_id:
                raise ValueError(f"response {response['id']} belongs to another key")
            self._id_to_entry[response["id"]] = (key_id, response)
            self._id_to_entry.move_to_end(response["id"])
            while len(self._id_to_entry) > self._max_responses:
                self._id_to_entry.popitem(last=False)

    def get(self, key_id: str, response_id: str) -> ResponseObject | None:
        """The response, or None when unknown, evicted, or made by another key."""
        with self._lock:
            entry = self._id_to_entry.get(response_id)
            if entry is None or entry[0] != key_id:
                return None
            self._id_to_entry.move_to_end(response_id)
            return entry[1]

    def __len__(self) -> int:
        return len(self._id_to_entry)

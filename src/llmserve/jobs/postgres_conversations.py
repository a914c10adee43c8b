"""Conversations and their items (`/v1/conversations`), for `PostgresJobStore`.

A conversation belongs to the key that made it; every read names the owner, and another key's
conversation reads exactly like one that does not exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from llmserve.database.postgres import Connection
from llmserve.jobs.postgres_tables import PostgresTables
from llmserve.jobs.wire import ConversationObject
from llmserve.serving.response_items import Item


class PostgresConversationTables(PostgresTables):
    """Conversations and their items, in their own tables."""

    def create_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> ConversationObject:
        now = int(time.time())
        with self._tx() as connection:
            connection.execute(
                "INSERT INTO conversations (id, owner, created_at, metadata) "
                "VALUES (%s, %s, %s, %s)",
                (conversation_id, owner, now, json.dumps(metadata)),
            )
            _insert_items(connection, conversation_id, items)
        return _conversation(conversation_id, now, metadata)

    def get_conversation(self, owner: str, conversation_id: str) -> ConversationObject | None:
        rows = self._rows(
            "SELECT created_at, metadata FROM conversations WHERE id = %s AND owner = %s",
            (conversation_id, owner),
        )
        if not rows:
            return None
        created_at, metadata = rows[0]
        return _conversation(conversation_id, int(created_at), json.loads(metadata))

    def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> ConversationObject | None:
        with self._tx() as connection:
            connection.execute(
                "UPDATE conversations SET metadata = %s WHERE id = %s AND owner = %s",
                (json.dumps(metadata), conversation_id, owner),
            )
        return self.get_conversation(owner, conversation_id)

    def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        with self._tx() as connection:
            deleted = connection.execute(
                "DELETE FROM conversations WHERE id = %s AND owner = %s", (conversation_id, owner)
            ).rowcount
            if deleted:
                connection.execute(
                    "DELETE FROM conversation_items WHERE conversation_id = %s", (conversation_id,)
                )
        return bool(deleted)

    def conversation_items(self, owner: str, conversation_id: str) -> list[Item] | None:
        """Every item, oldest first; None if `owner` has no such conversation."""
        if self.get_conversation(owner, conversation_id) is None:
            return None
        rows = self._rows(
            "SELECT item FROM conversation_items WHERE conversation_id = %s ORDER BY seq",
            (conversation_id,),
        )
        return [json.loads(row[0]) for row in rows]

    def add_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[Item]
    ) -> bool:
        with self._tx() as connection:
            if not _owns(connection, owner, conversation_id):
                return False
            _insert_items(connection, conversation_id, items)
        return True

    def delete_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> bool:
        with self._tx() as connection:
            if not _owns(connection, owner, conversation_id):
                return False
            deleted = connection.execute(
                "DELETE FROM conversation_items WHERE conversation_id = %s AND item_id = %s",
                (conversation_id, item_id),
            ).rowcount
        return bool(deleted)


def _owns(connection: Connection, owner: str, conversation_id: str) -> bool:
    found = connection.execute(
        "SELECT 1 FROM conversations WHERE id = %s AND owner = %s", (conversation_id, owner)
    ).fetchone()
    return found is not None


def _insert_items(connection: Connection, conversation_id: str, items: Sequence[Item]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO conversation_items (conversation_id, item_id, item) VALUES (%s, %s, %s)",
            [(conversation_id, str(item["id"]), json.dumps(item)) for item in items],
        )


def _conversation(
    conversation_id: str, created_at: int, metadata: dict[str, str]
) -> ConversationObject:
    return {
        "id": conversation_id,
        "object": "conversation",
        "created_at": created_at,
        "metadata": metadata,
    }

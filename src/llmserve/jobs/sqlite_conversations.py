"""The conversations half of `SqliteJobStore`: `/v1/conversations` and their items.

A conversation belongs to the key that made it; every read names the owner, and another key's
conversation reads exactly like one that does not exist.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from llmserve.jobs.sqlite_connection import SqliteConnection
from llmserve.jobs.wire import ConversationObject
from llmserve.serving.response_items import Item

CONVERSATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_items_by_conversation
    ON conversation_items (conversation_id, seq);
"""


class SqliteConversationTables(SqliteConnection):
    """Conversations and their items, in their own tables."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with self._write() as db:
            for statement in CONVERSATIONS_SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def create_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str], items: Sequence[Item]
    ) -> ConversationObject:
        now = int(time.time())
        with self._write() as db:
            db.execute(
                "INSERT INTO conversations (id, owner, created_at, metadata) VALUES (?, ?, ?, ?)",
                (conversation_id, owner, now, json.dumps(metadata)),
            )
            _insert_items(db, conversation_id, items)
        return _conversation(conversation_id, now, metadata)

    def get_conversation(self, owner: str, conversation_id: str) -> ConversationObject | None:
        rows = self._read(
            "SELECT created_at, metadata FROM conversations WHERE id = ? AND owner = ?",
            (conversation_id, owner),
        )
        if not rows:
            return None
        created_at, metadata = rows[0]
        return _conversation(conversation_id, int(str(created_at)), json.loads(str(metadata)))

    def update_conversation(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> ConversationObject | None:
        with self._write() as db:
            db.execute(
                "UPDATE conversations SET metadata = ? WHERE id = ? AND owner = ?",
                (json.dumps(metadata), conversation_id, owner),
            )
        return self.get_conversation(owner, conversation_id)

    def delete_conversation(self, owner: str, conversation_id: str) -> bool:
        with self._write() as db:
            deleted = db.execute(
                "DELETE FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
            ).rowcount
            if deleted:
                db.execute(
                    "DELETE FROM conversation_items WHERE conversation_id = ?", (conversation_id,)
                )
        return bool(deleted)

    def conversation_items(self, owner: str, conversation_id: str) -> list[Item] | None:
        """Every item, oldest first; None if `owner` has no such conversation."""
        if self.get_conversation(owner, conversation_id) is None:
            return None
        rows = self._read(
            "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        )
        return [json.loads(str(row[0])) for row in rows]

    def add_conversation_items(
        self, owner: str, conversation_id: str, items: Sequence[Item]
    ) -> bool:
        with self._write() as db:
            found = db.execute(
                "SELECT 1 FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
            ).fetchone()
            if found is None:
                return False
            _insert_items(db, conversation_id, items)
        return True

    def delete_conversation_item(self, owner: str, conversation_id: str, item_id: str) -> bool:
        with self._write() as db:
            found = db.execute(
                "SELECT 1 FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
            ).fetchone()
            if found is None:
                return False
            deleted = db.execute(
                "DELETE FROM conversation_items WHERE conversation_id = ? AND item_id = ?",
                (conversation_id, item_id),
            ).rowcount
        return bool(deleted)


def _insert_items(db: sqlite3.Connection, conversation_id: str, items: Sequence[Item]) -> None:
    db.executemany(
        "INSERT INTO conversation_items (conversation_id, item_id, item) VALUES (?, ?, ?)",
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

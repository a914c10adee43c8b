"""One streamed reply from `/v1/chat/completions`, its text deltas and its timing."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator

import httpx

from llmserve.chat.session import ChatSession, ReplyStats
from llmserve.remote import RemoteError, describe_error


class ReplyStream:
    """`deltas()` yields the text as it streams; then `text` and `stats()` describe the reply.

    Closing `deltas()` early (Ctrl+C) closes the connection, which makes the server abort the
    request and free its slot.
    """

    def __init__(self, client: httpx.Client, root: str, session: ChatSession) -> None:
        self.client = client
        self.url = f"{root}/v1/chat/completions"
        self.body = session.request_body()
        self.text = ""
        self.num_tokens: int | None = None
        self.started_at = 0.0
        self.first_at: float | None = None
        self.last_at = 0.0

    def deltas(self) -> Generator[str, None, None]:
        """The reply's text, piece by piece; RemoteError for an error status or in-band error."""
        self.started_at = time.perf_counter()
        try:
            with self.client.stream("POST", self.url, json=self.body) as response:
                if response.status_code != 200:
                    response.read()
                    raise RemoteError(describe_error(response))
                yield from self._deltas(response)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None

    def _deltas(self, response: httpx.Response) -> Iterator[str]:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            if "error" in chunk:
                raise RemoteError(f"{chunk['error'].get('code')}: {chunk['error'].get('message')}")
            if chunk.get("usage"):
                self.num_tokens = int(chunk["usage"].get("completion_tokens") or 0)
            choices = chunk.get("choices") or [{}]
            delta = (choices[0].get("delta") or {}).get("content") or ""
            if delta:
                self.last_at = time.perf_counter()
                self.first_at = self.first_at or self.last_at
                self.text += delta
                yield delta

    def stats(self) -> ReplyStats | None:
        """The reply's timing, once text came."""
        if self.first_at is None:
            return None
        return ReplyStats(
            self.first_at - self.started_at, self.last_at - self.first_at, self.num_tokens
        )

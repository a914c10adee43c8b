"""Shared names of the Responses tests: the model and the server's URL and keys."""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "tiny-chat"


@dataclass(frozen=True)
class ResponsesServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    alice: str
    bob: str

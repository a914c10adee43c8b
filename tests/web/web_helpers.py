"""Shared by the playground tests (importable thanks to conftest's sys.path entry)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyedServer:
    """A server that needs an API key; `url` is its root (no /v1)."""

    url: str
    key: str

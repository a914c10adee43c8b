"""`GrammarCache`: compiled grammars by spec, least recently used first out, bounded in bytes.

A compiled grammar can be large (a 1 MB regex compiles to about 27 MB), so the bound is the sum
of the measured sizes (`structured.cache_mb`), not a number of entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from llmserve.types import GrammarSpec

T = TypeVar("T")


class GrammarCache(Generic[T]):
    """Thread-safe: worker threads compile while the engine thread reads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.num_bytes = 0
        self._entries: OrderedDict[GrammarSpec, tuple[T, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, spec: GrammarSpec) -> T | None:
        with self._lock:
            entry = self._entries.get(spec)
            if entry is None:
                return None
            self._entries.move_to_end(spec)
            return entry[0]

    def put(self, spec: GrammarSpec, value: T, size: int) -> int:
        """Keep `value` (unless it alone is over the bound), evicting the oldest to fit; the
        number of bytes evicted."""
        with self._lock:
            old = self._entries.pop(spec, None)
            before = self.num_bytes - (old[1] if old is not None else 0)
            if size > self.max_bytes:
                self.num_bytes = before
                return size
            self._entries[spec] = (value, size)
            self.num_bytes = before + size
            while self.num_bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.num_bytes -= evicted
            return before + size - self.num_bytes

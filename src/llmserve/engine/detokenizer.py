"""Incremental detokenization and stop strings.

Text grows only by whole characters: a token that ends inside a multi-byte character (decoding to
U+FFFD) waits for the next one. Text that could be the start of a stop string is held back until
it is known not to be one, so a stop string is never emitted, even across token boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"


class Decoder(Protocol):
    def __call__(self, token_ids: Sequence[int]) -> str: ...


class IncrementalDetokenizer:
    """Turns output tokens into text deltas for one sequence."""

    def __init__(self, decode: Decoder, stop: tuple[str, ...] = ()) -> None:
        self._decode = decode
        self._stop = stop
        self._token_ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self.text = ""  # every decoded character so far
        self._num_emitted = 0
        self.stopped = False  # a stop string matched; `text` ends just before it

    def add_token(self, token_id: int) -> None:
        """Decode one more token; sets `stopped` when a stop string appears."""
        self._token_ids.append(token_id)
        prefix = self._decode(self._token_ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._token_ids[self._prefix_offset :])
        if len(full) <= len(prefix) or full.endswith(REPLACEMENT_CHAR):
            return
        previous_length = len(self.text)
        self.text += full[len(prefix) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._token_ids)
        self._check_stop(previous_length)

    def _check_stop(self, previous_length: int) -> None:
        longest = max((len(s) for s in self._stop), default=0)
        search_from = max(0, previous_length - longest + 1)
        hits = [i for s in self._stop if (i := self.text.find(s, search_from)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def take_delta(self, *, final: bool) -> str:
        """Text not yet emitted; keeps back a possible stop-string prefix unless `final`."""
        end = len(self.text) if final or self.stopped else len(self.text) - self._held_back()
        end = max(end, self._num_emitted)
        delta = self.text[self._num_emitted : end]
        self._num_emitted = end
        return delta

    def _held_back(self) -> int:
        for size in range(min(len(self.text), max((len(s) for s in self._stop), default=0)), 0, -1):
            suffix = self.text[-size:]
            if any(s.startswith(suffix) and s != suffix for s in self._stop):
                return size
        return 0

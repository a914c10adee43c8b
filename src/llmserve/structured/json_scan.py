"""A character scanner that finds where a JSON value (or the rest of an object) ends in a stream."""

from __future__ import annotations


class JsonScanner:
    """Tracks brackets and strings across fed text; `feed` says where the scanned part ends.

    A value ends after its closing bracket or quote, or before a `,` `}` `]` at its own level (a
    number or literal). With `in_object=True` it scans the rest of an object instead, which ends
    after the `}` that closes it.
    """

    def __init__(self, *, in_object: bool = False) -> None:
        self.depth = 1 if in_object else 0
        self.in_object = in_object
        self.in_string = False
        self.escape = False

    def feed(self, text: str, start: int) -> int | None:
        """The index in `text` just past the end, or None when the end is not in `text` yet."""
        for i in range(start, len(text)):
            end = self._step(text[i], i)
            if end is not None:
                return end
        return None

    def _step(self, ch: str, i: int) -> int | None:
        if self.in_string:
            if self.escape:
                self.escape = False
            elif ch == "\\":
                self.escape = True
            elif ch == '"':
                self.in_string = False
                return i + 1 if self.depth == 0 else None
            return None
        if ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            if self.depth == 0:
                return i  # a scalar ended by its parent's close
            self.depth -= 1
            return i + 1 if self.depth == 0 else None
        elif ch == "," and self.depth == 0:
            return i
        return None

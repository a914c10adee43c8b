"""Bytes the C allocator has handed out (glibc's `mallinfo2`): how big a compiled grammar is.

llguidance allocates with the system allocator, so the difference around a compile is the
compiled grammar's size (about 27 bytes per byte of a large regex, measured). Other threads
allocating at the same moment blur it; the cache takes it as a measured estimate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.cache
def _mallinfo2() -> Any:
    """glibc's `mallinfo2`, or None where there is none (macOS, musl, glibc < 2.33)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


def allocated_bytes() -> int | None:
    """Bytes in use from malloc now (small blocks plus mmapped ones), or None if unknown."""
    function = _mallinfo2()
    if function is None:
        return None
    info = function()
    return int(info.uordblks) + int(info.hblkhd)


@functools.cache
def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give the allocator's free pages back to the system (glibc `malloc_trim`), if it can.

    NOTE: evicted grammars free tens of MB in the arenas of the threads that built and copied
    them; without a trim the process keeps that memory as its own (RSS) for later reuse.
    """
    function = _malloc_trim()
    if function is not None:
        function(0)

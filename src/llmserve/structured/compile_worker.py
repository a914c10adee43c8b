"""`CompileWorker`: grammars compile on threads with a big native stack, with a time limit.

llguidance's compile recurses natively; a thread's default stack (8 MB on Linux) overflows on a
deep grammar and kills the process. These threads get `STACK_BYTES` (address space reserved,
memory used only as deep as the compile goes), and `grammar_depth.MAX_GRAMMAR_DEPTH` keeps
every grammar far inside it. A compile past its time limit is answered with an error at once;
the thread finishes it in the background (native code cannot be interrupted).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from llmserve.structured.grammar import InvalidGrammarError

T = TypeVar("T")
STACK_BYTES = 256 * 2**20
MIN_STACK_BYTES = 32 * 2**20  # twice what the deepest grammar allowed needs (16 MB, measured)
# NOTE: one thread: llguidance bounds each compile (fuel, grammar size: a 1 MB regex takes 0.3 s),
# and a second thread's malloc arena kept ~90 MB more of evicted grammars (measured).
NUM_THREADS = 1
_STACK_LOCK = threading.Lock()  # threading.stack_size is process-wide: set, start, restore
_Job = tuple[Callable[[], Any], "Future[Any]"]


class CompileWorker:
    """A few daemon threads with big stacks, fed from one queue."""

    def __init__(self, num_threads: int = NUM_THREADS, stack_bytes: int = STACK_BYTES) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        for i in range(num_threads):
            self._start(f"grammar-compile-{i}", stack_bytes)

    def _start(self, name: str, stack_bytes: int) -> None:
        """Start a thread with `stack_bytes` of stack, or less where the system refuses that
        (an address-space limit), down to `MIN_STACK_BYTES`."""
        with _STACK_LOCK:
            previous = threading.stack_size()
            try:
                while True:
                    try:
                        threading.stack_size(stack_bytes)
                        threading.Thread(target=self._serve, name=name, daemon=True).start()
                        return
                    except (RuntimeError, ValueError, MemoryError):
                        if stack_bytes <= MIN_STACK_BYTES:
                            raise
                        stack_bytes = max(MIN_STACK_BYTES, stack_bytes // 4)
            finally:
                threading.stack_size(previous)

    def run(self, fn: Callable[[], T], timeout_s: float) -> T:
        """`fn()` on a big-stack thread; InvalidGrammarError when it takes over `timeout_s`."""
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: never run; running: its result is dropped
            raise InvalidGrammarError(
                f"the grammar did not compile within {timeout_s:g} s; simplify it"
            ) from None

    def _serve(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # NOTE: handed to the caller, who raises it
                future.set_exception(exc)


_SHARED: CompileWorker | None = None
_SHARED_LOCK = threading.Lock()


def shared_worker() -> CompileWorker:
    """The process's compile threads, started on first use."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = CompileWorker()
        return _SHARED

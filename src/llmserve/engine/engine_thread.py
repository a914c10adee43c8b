"""Runs an `LLMEngine` in a background thread and streams its outputs to asyncio consumers.

The event loop never steps the engine: it posts commands (add, abort) to the thread, and the
thread hands outputs back with `loop.call_soon_threadsafe`, so /health stays fast while it works.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from llmserve.engine.llm_engine import DuplicateRequestError, LLMEngine
from llmserve.errors import InvalidRequestError, LlmserveError, ServerError
from llmserve.types import BackendLoad, GenerateOutput, GenerateRequest

logger = logging.getLogger(__name__)
StreamItem = GenerateOutput | BaseException


class RequestFailedError(RuntimeError):
    """The engine could not finish this request; the cause (for the log) is `__cause__`.

    Not an `LlmserveError` on purpose: the API answers it with a generic 500 and logs it.
    """

    def __init__(self, request_id: str, cause: BaseException | None = None) -> None:
        super().__init__(f"request {request_id} failed in the engine")
        self.__cause__ = cause


@dataclass(frozen=True)
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[StreamItem]

    def put(self, item: StreamItem) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class EngineThread:
    """Owns the engine; every engine call happens on its one thread."""

    def __init__(self, engine: LLMEngine, *, num_threads: int | None = None) -> None:
        self._engine = engine
        self._num_threads = num_threads
        self._wakeup = threading.Condition()
        self._commands: list[Callable[[], None]] = []
        self._request_to_stream: dict[str, _Stream] = {}
        self._is_stopping = False
        self._load = engine.load()
        self._thread = threading.Thread(target=self._run, name="llmserve-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Abort every request in flight and join the thread (blocking)."""
        with self._wakeup:
            self._is_stopping = True
            self._wakeup.notify()
        self._thread.join()

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def load(self) -> BackendLoad:
        return self._load  # a snapshot the engine thread refreshes after every step

    async def generate(self, request: GenerateRequest) -> AsyncGenerator[GenerateOutput, None]:
        """Outputs of `request`; closing the iterator early aborts it before `aclose` returns.

        A request id already in flight is refused (DuplicateRequestError), never taken over.
        """
        if not self.is_alive:
            raise ServerError("the engine is not running")
        stream = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        if self._request_to_stream.setdefault(request.request_id, stream) is not stream:
            raise DuplicateRequestError(f"request {request.request_id!r} is already in flight")
        self._post(lambda: self._add(request, stream))
        num_finished = 0
        try:
            while num_finished < request.sampling.n:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                num_finished += item.finish_reason is not None
                yield item
        finally:
            if num_finished < request.sampling.n:
                await self.abort(request.request_id)
            self._request_to_stream.pop(request.request_id, None)

    async def abort(self, request_id: str) -> None:
        """Abort `request_id` and return once its KV blocks are free."""
        if not self.is_alive:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def abort_now() -> None:
            try:
                self._deliver(self._engine.abort_request(request_id))
                self._load = self._engine.load()
            finally:
                loop.call_soon_threadsafe(_resolve, done)

        self._post(abort_now)
        await done

    def _post(self, command: Callable[[], None]) -> None:
        with self._wakeup:
            self._commands.append(command)
            self._wakeup.notify()

    def _add(self, request: GenerateRequest, stream: _Stream) -> None:
        try:
            self._engine.add_request(request)
        except DuplicateRequestError as exc:  # only when called around `generate`
            stream.put(RequestFailedError(request.request_id, exc))
        except ValueError as exc:
            stream.put(InvalidRequestError(str(exc), param="prompt"))
        except Exception as exc:
            logger.exception("request %s could not be added", request.request_id)
            stream.put(RequestFailedError(request.request_id, exc))

    def _deliver(self, outputs: list[GenerateOutput]) -> None:
        """Hand a step's outputs over with one wake-up per event loop, not one per output."""
        loop_to_items: dict[asyncio.AbstractEventLoop, list[tuple[_Stream, StreamItem]]] = {}
        for output in outputs:
            stream = self._request_to_stream.get(output.request_id)
            if stream is not None:
                loop_to_items.setdefault(stream.loop, []).append((stream, output))
        for loop, items in loop_to_items.items():
            loop.call_soon_threadsafe(_put_all, items)

    def _run(self) -> None:
        if self._num_threads is not None:
            import torch

            torch.set_num_threads(self._num_threads)
        while True:
            with self._wakeup:
                while not (
                    self._commands or self._is_stopping or self._engine.has_unfinished_requests()
                ):
                    self._wakeup.wait()
                commands, self._commands = self._commands, []
                is_stopping = self._is_stopping
            for command in commands:
                _run_logged(command)
            self._load = self._engine.load()
            if is_stopping:
                self._abort_all()
                return
            if self._engine.has_unfinished_requests():
                self._step()

    def _step(self) -> None:
        try:
            outputs = self._engine.step()
        except Exception as exc:  # not one request's fault (those fail alone): fail them all
            logger.exception("engine step failed; failing every request in flight")
            self._fail_all(exc)
            return
        finally:
            self._load = self._engine.load()
        self._deliver(outputs)
        for request_id, cause in self._engine.pop_failures().items():
            self._fail(request_id, cause)

    def _fail(self, request_id: str, cause: BaseException) -> None:
        stream = self._request_to_stream.get(request_id)
        if stream is not None:  # the request's own error (its grammar's limit) reaches the client
            is_own = isinstance(cause, LlmserveError)
            stream.put(cause if is_own else RequestFailedError(request_id, cause))

    def _fail_all(self, cause: BaseException) -> None:
        for request_id in list(self._request_to_stream):
            _run_logged(self._engine.abort_request, request_id)
            self._fail(request_id, cause)
        self._engine.pop_failures()

    def _abort_all(self) -> None:
        for request_id in list(self._request_to_stream):
            self._deliver(self._engine.abort_request(request_id))
        self._load = self._engine.load()


def _run_logged(command: Callable[..., object], *args: object) -> None:
    """Run `command` on the engine thread; an error is logged, never the end of the thread."""
    try:
        command(*args)
    except Exception:
        logger.exception("engine command failed")


def _put_all(items: list[tuple[_Stream, StreamItem]]) -> None:
    for stream, item in items:
        stream.queue.put_nowait(item)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

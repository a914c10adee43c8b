"""Run the app under uvicorn; SIGTERM or Ctrl-C drains it instead of closing the socket first.

uvicorn's own handling stops listening at once (new clients get connection refused) and waits for
every stream with no bound. Here the first signal starts a drain (api/admission/drain.py): the
socket stays open and new requests get 503, requests in flight get `shutdown_timeout_s` to
finish, the rest are cut off with an in-band error; only then does uvicorn close the socket and
stop. A second signal cuts everything off at once. Either way every slot is released (usage
recorded) and the process exits 0, without re-raising the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from llmserve.api.admission import ServerState
from llmserve.config import ServerConfig

logger = logging.getLogger("llmserve.server")
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RELEASE_GRACE_S = 1.0  # after the cut-off, streams get this long to send their last event
CONNECTION_GRACE_S = 2.0  # then uvicorn waits this long for connections to close
POLL_S = 0.05


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose signals drain `state` before uvicorn shuts down."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.num_signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM while serving; unlike uvicorn, never re-raise them after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal: the first drains, the next cut off (before start-up ends: just exit)."""
        self.num_signals += 1
        if not self.started or self._loop is None:
            self.should_exit = True  # uvicorn stops as soon as start-up (model loading) ends
            return
        name = signal.Signals(sig).name
        self._loop.call_soon_threadsafe(self._on_signal, name, self.num_signals > 1)

    def _on_signal(self, name: str, is_repeat: bool) -> None:
        if is_repeat or self._draining is not None:
            logger.warning("%s again: stopping %d requests now", name, self.num_in_flight())
            self.state.drain.cut_off_now()
            return
        self._draining = asyncio.create_task(self._drain_then_exit(name), name="llmserve-drain")

    def num_in_flight(self) -> int:
        """Admitted requests not yet released, over every model."""
        return self.state.drain.num_in_flight

    async def _drain_then_exit(self, name: str) -> None:
        drain, timeout_s = self.state.drain, self.state.config.shutdown_timeout_s
        drain.begin(timeout_s)
        logger.info(
            "%s: draining; %d requests in flight get up to %gs to finish (a second signal stops "
            "them now)", name, self.num_in_flight(), timeout_s,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        while self.num_in_flight() and loop.time() < (drain.cutoff_at or 0.0) + RELEASE_GRACE_S:
            await asyncio.sleep(POLL_S)
        num_left = self.num_in_flight()
        if num_left:
            logger.warning("%d requests still in flight after the cut-off; exiting", num_left)
        else:
            logger.info("drained: every request in flight has ended")
        self.should_exit = True


def uvicorn_config(app: FastAPI, config: ServerConfig) -> uvicorn.Config:
    """uvicorn on the config's address, logging through our handlers (see logs.py)."""
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        log_level=config.log.level,
        access_log=False,
        timeout_graceful_shutdown=int(CONNECTION_GRACE_S),
    )


async def serve_app(
    app: FastAPI,
    config: ServerConfig,
    sock: socket.socket | None,
    on_listening: Callable[[int], None],
) -> None:
    """Serve `app` (on `sock` when given) until a signal has drained it; `on_listening(port)`."""
    started_at = time.monotonic()
    server = DrainingServer(uvicorn_config(app, config), app.state.llmserve)
    serving = asyncio.create_task(server.serve(sockets=None if sock is None else [sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(POLL_S)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        logger.info("ready in %.1fs: listening on port %d", time.monotonic() - started_at, port)
        on_listening(port)
    await serving

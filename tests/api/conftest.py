"""Fixtures for API tests: the app over FakeBackends, reached through httpx's ASGI transport."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import uvicorn
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

FAKE_MODEL = "fake-model"
ClientFactory = Callable[..., httpx.AsyncClient]


def fake_config(*names: str) -> ServerConfig:
    """A config naming `names` as fake-backend models."""
    return ServerConfig(models=tuple(ModelConfig(n, source="fake", backend="fake") for n in names))


@pytest.fixture
def gatekeeper() -> OpenGatekeeper:
    """The no-keys gatekeeper, which remembers every usage record."""
    return OpenGatekeeper()


@pytest.fixture
def backend() -> FakeBackend:
    """The default fake model."""
    return FakeBackend(FAKE_MODEL)


@pytest.fixture
async def client(
    backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for an app serving `backend`."""
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: backend}, gatekeeper)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


class LiveServer:
    """A real uvicorn server on 127.0.0.1 (free port) in a background thread."""

    def __init__(self, app: object) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
def serve() -> Iterator[Callable[[object], LiveServer]]:
    """Start live servers for apps; every one is stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(LiveServer(app))

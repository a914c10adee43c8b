"""Fixtures for API tests: the app over FakeBackends, reached through httpx's ASGI transport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from live_server import LiveServer
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


@pytest.fixture
def serve() -> Iterator[Callable[[object], LiveServer]]:
    """Start live servers for apps; every one is stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(LiveServer(app))

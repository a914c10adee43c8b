"""Real uvicorn servers on 127.0.0.1 for auth tests: in this process, or as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from llmserve.backends.base import Backend, Canary
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig, LimitsConfig, ModelConfig, ServerConfig
from llmserve.types import (
    BackendLoad,
    ChatMessage,
    EmbeddingResult,
    GenerateOutput,
    GenerateRequest,
    ModelInfo,
)

MODEL = "fake-model"


def fake_server_config(
    home: Path, auth: AuthConfig | None = None, limits: LimitsConfig | None = None
) -> ServerConfig:
    """A config serving one fake model from `home`."""
    models = (ModelConfig(MODEL, source="fake", backend="fake"),)
    return ServerConfig(
        models=models, home=home, auth=auth or AuthConfig(), limits=limits or LimitsConfig()
    )


class MeteredBackend(FakeBackend):
    """A FakeBackend that measures, server side, the requests it has in flight and their order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_active = 0
        self.peak_active = 0
        self.enqueued_at: dict[str, float] = {}  # request_id -> when generate was called
        self.starts: list[tuple[float, str, str]] = []  # (time, tenant, request_id) admitted

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.num_active += 1
        self.peak_active = max(self.peak_active, self.num_active)
        self.enqueued_at[request.request_id] = time.monotonic()
        try:
            async for output in super().generate(request):
                yield output
        finally:
            self.num_active -= 1

    async def _admit(self, request: GenerateRequest) -> None:
        await super()._admit(request)  # returns once the scheduler let the request run
        self.starts.append((time.monotonic(), request.tenant, request.request_id))


@contextlib.asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run `app` with uvicorn on its own event loop in a thread; yields its base URL.

    A client in the test's loop then measures the server from outside: a stalled server loop
    shows as a slow answer instead of stalling the measuring client too.
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def chat_body(*, stream: bool = True, max_tokens: int | None = None) -> dict[str, Any]:
    """A chat request for the fake model."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def auth(secret: str) -> dict[str, str]:
    """The Authorization header for `secret`."""
    return {"Authorization": f"Bearer {secret}"}


async def wait_until(predicate: Any, timeout_s: float) -> float:
    """Poll `predicate` (sync or async) until true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


def http_client(base_url: str) -> httpx.AsyncClient:
    """An httpx client allowing many parallel connections."""
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60)


class FirstOutputRecorder:
    """Wraps any backend; records, server side, when each request was sent to it and when its
    first output came back (for the real engine, the step that admitted it)."""

    canary: Canary | None = None  # a plain model: no variants

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.enqueued_at: dict[str, float] = {}
        self.starts: list[tuple[float, str, str]] = []  # (time, tenant, request_id)

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    async def start(self) -> None:
        await self.backend.start()

    async def shutdown(self) -> None:
        await self.backend.shutdown()

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.backend.decode(token_ids)

    def render_chat(self, messages: Sequence[ChatMessage], tools: Any = None) -> str:
        return self.backend.render_chat(messages, tools)

    def compile_grammar(self, spec: Any) -> None:
        self.backend.compile_grammar(spec)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.enqueued_at[request.request_id] = time.monotonic()
        outputs = self.backend.generate(request)
        is_first = True
        try:
            async for output in outputs:
                if is_first:
                    self.starts.append((time.monotonic(), request.tenant, request.request_id))
                    is_first = False
                yield output
        finally:
            await outputs.aclose()  # type: ignore[attr-defined]

    async def abort(self, request_id: str) -> None:
        await self.backend.abort(request_id)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return await self.backend.embed(texts)

    def load(self) -> BackendLoad:
        return self.backend.load()

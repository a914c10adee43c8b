"""A client that leaves before the first byte of a stream still frees its slot."""

from __future__ import annotations

import json
from typing import Any

import pytest
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend

from .conftest import FAKE_MODEL, fake_config


async def test_client_gone_before_first_byte_releases_slot(
    backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> None:
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: backend}, gatekeeper)
    body = json.dumps(
        {"model": FAKE_MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            raise OSError("client went away")  # what a server does when the socket is gone

    with pytest.raises(OSError, match="client went away"):
        await app(scope, receive, send)
    assert gatekeeper.num_in_flight == 0
    assert len(gatekeeper.usage) == 1
    assert backend.load().num_running == 0

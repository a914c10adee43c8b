"""`stream_options` is only allowed with `stream: true`, as OpenAI answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from open_gatekeeper import OpenGatekeeper

from .conftest import FAKE_MODEL

BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/completions": {"prompt": "Hi"},
}
ERROR = {
    "message": "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    "type": "invalid_request_error",
    "param": "stream_options",
    "code": None,
}


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("stream", [{}, {"stream": False}])
async def test_stream_options_without_stream_is_400(
    client: httpx.AsyncClient, gatekeeper: OpenGatekeeper, path: str, stream: dict[str, bool]
) -> None:
    body = {"model": FAKE_MODEL, **BODIES[path], **stream}
    response = await client.post(path, json={**body, "stream_options": {"include_usage": True}})
    assert response.status_code == 400
    assert response.json() == {"error": ERROR}
    assert gatekeeper.usage == []  # rejected before admission


@pytest.mark.parametrize("path", list(BODIES))
async def test_null_stream_options_without_stream_is_fine(
    client: httpx.AsyncClient, path: str
) -> None:
    body = {"model": FAKE_MODEL, **BODIES[path], "stream_options": None}
    response = await client.post(path, json=body)
    assert response.status_code == 200


@pytest.mark.parametrize("path", list(BODIES))
async def test_stream_options_with_stream_still_adds_usage(
    client: httpx.AsyncClient, path: str
) -> None:
    body = {"model": FAKE_MODEL, **BODIES[path], "stream": True}
    response = await client.post(path, json={**body, "stream_options": {"include_usage": True}})
    assert response.status_code == 200
    assert '"choices":[],"usage":{' in response.text

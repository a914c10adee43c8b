"""Server-sent events framing of streamed chat and text completions, checked byte by byte."""

from __future__ import annotations

import json
from typing import Any

import httpx
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import DEFAULT_REPLY, FakeBackend

from .conftest import FAKE_MODEL, fake_config

MESSAGES = [{"role": "user", "content": "Hi"}]


def events(raw: bytes) -> list[str]:
    """The `data:` payloads of an SSE body; asserts the exact framing."""
    assert raw.endswith(b"data: [DONE]\n\n")
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == ""
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks[:-1])
    return [block.removeprefix("data: ") for block in blocks[:-1]]


def chunks(raw: bytes) -> list[dict[str, Any]]:
    payloads = events(raw)
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


async def stream(client: httpx.AsyncClient, path: str, **fields: object) -> httpx.Response:
    response = await client.post(path, json={"model": FAKE_MODEL, "stream": True, **fields})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response


async def test_chat_stream_role_first_then_content_then_finish(client: httpx.AsyncClient) -> None:
    response = await stream(client, "/v1/chat/completions", messages=MESSAGES, max_tokens=4)
    parsed = chunks(response.content)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"].get("content", "") for c in parsed]
    assert "".join(contents) == DEFAULT_REPLY[:4]
    assert [c["choices"][0]["finish_reason"] for c in parsed][-1] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in parsed[:-1])
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert len({c["id"] for c in parsed}) == 1
    assert all("usage" not in c for c in parsed)


async def test_include_usage_adds_null_usage_and_a_final_usage_chunk(
    client: httpx.AsyncClient, gatekeeper: OpenGatekeeper
) -> None:
    response = await stream(
        client,
        "/v1/chat/completions",
        messages=MESSAGES,
        stream_options={"include_usage": True},
    )
    parsed = chunks(response.content)
    assert all(c["usage"] is None for c in parsed[:-1])
    last = parsed[-1]
    assert last["choices"] == []
    completion = len(DEFAULT_REPLY.encode()) + 1
    assert last["usage"]["completion_tokens"] == completion
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + completion
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert gatekeeper.usage[-1].completion_tokens == completion
    assert gatekeeper.num_in_flight == 0


async def test_chat_stream_with_n_has_a_role_and_finish_per_choice(
    client: httpx.AsyncClient,
) -> None:
    response = await stream(client, "/v1/chat/completions", messages=MESSAGES, n=2, max_tokens=3)
    parsed = chunks(response.content)
    for index in (0, 1):
        mine = [c["choices"][0] for c in parsed if c["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert "".join(c["delta"].get("content", "") for c in mine) == "Hel"
        assert mine[-1]["finish_reason"] == "length"


async def test_completion_stream_with_echo_and_usage(client: httpx.AsyncClient) -> None:
    response = await stream(
        client,
        "/v1/completions",
        prompt="Say:",
        max_tokens=5,
        echo=True,
        stream_options={"include_usage": True},
    )
    parsed = chunks(response.content)
    text = "".join(c["choices"][0]["text"] for c in parsed if c["choices"])
    assert text == "Say:" + DEFAULT_REPLY[:5]
    assert parsed[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 5,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c["object"] == "text_completion" for c in parsed)


async def test_error_mid_stream_is_an_error_event_then_done(gatekeeper: OpenGatekeeper) -> None:
    broken = FakeBackend(FAKE_MODEL, fail_after_tokens=2)
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: broken}, gatekeeper)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await stream(c, "/v1/chat/completions", messages=MESSAGES)
    payloads = events(response.content)
    error = json.loads(payloads[-2])["error"]
    assert error["type"] == "server_error"
    assert response.headers["x-request-id"] in error["message"]
    assert "Traceback" not in response.text
    before = [json.loads(p)["choices"][0]["delta"].get("content", "") for p in payloads[:-2]]
    assert "".join(before) == "He"
    assert gatekeeper.usage[-1].is_error
    assert gatekeeper.num_in_flight == 0


async def test_stream_holds_back_a_stop_prefix_and_releases_it_when_no_stop_follows(
    client: httpx.AsyncClient,
) -> None:
    # "a fake" starts like the stop "a fx": held back while it might match, sent once it cannot;
    # "model" ends the text before it.
    response = await stream(
        client, "/v1/chat/completions", messages=MESSAGES, stop=["a fx", "model"]
    )
    parsed = chunks(response.content)
    contents = [c["choices"][0]["delta"].get("content", "") for c in parsed]
    assert "".join(contents) == DEFAULT_REPLY[: DEFAULT_REPLY.index("model")]
    assert "a f" in contents  # held byte by byte, then sent in one delta
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"

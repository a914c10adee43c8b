"""POST /v1/chat/completions against the fake backend (reply "Hello! I am a fake model.")."""

from __future__ import annotations

import httpx
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import DEFAULT_REPLY, FakeBackend
from llmserve.types import ChatMessage

from .conftest import FAKE_MODEL, fake_config

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def chat_prompt_tokens(backend: FakeBackend) -> int:
    """Prompt tokens of MESSAGES under the fake's template."""
    text = backend.render_chat([ChatMessage(m["role"], m["content"]) for m in MESSAGES])
    return len(backend.encode(text, add_special_tokens=False))


async def test_chat_completion_returns_reply_and_exact_usage(
    client: httpx.AsyncClient, backend: FakeBackend, gatekeeper: OpenGatekeeper
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": MESSAGES}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == FAKE_MODEL
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": DEFAULT_REPLY,
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    num_prompt = chat_prompt_tokens(backend)
    completion = len(DEFAULT_REPLY.encode()) + 1  # every byte, then EOS
    assert body["usage"] == {
        "prompt_tokens": num_prompt,
        "completion_tokens": completion,
        "total_tokens": num_prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert response.headers["x-request-id"].startswith("req_")
    assert gatekeeper.num_in_flight == 0
    assert gatekeeper.usage[-1].completion_tokens == completion


async def post_chat(client: httpx.AsyncClient, **fields: object) -> httpx.Response:
    return await client.post(
        "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": MESSAGES, **fields}
    )


async def test_max_tokens_cuts_the_reply_with_length(client: httpx.AsyncClient) -> None:
    body = (await post_chat(client, max_tokens=5)).json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_REPLY[:5]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


async def test_max_completion_tokens_is_honoured(client: httpx.AsyncClient) -> None:
    body = (await post_chat(client, max_completion_tokens=3)).json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_REPLY[:3]


async def test_stop_string_ends_the_reply_without_the_stop_text(client: httpx.AsyncClient) -> None:
    body = (await post_chat(client, stop=["fake", "zzz"])).json()
    assert body["choices"][0]["message"]["content"] == "Hello! I am a "
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_n_returns_that_many_choices(client: httpx.AsyncClient) -> None:
    body = (await post_chat(client, n=3, max_tokens=4)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"Hell"}
    assert body["usage"]["completion_tokens"] == 12


async def test_text_parts_are_joined(client: httpx.AsyncClient, backend: FakeBackend) -> None:
    parts = [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]
    messages = [{"role": "system", "content": parts}, {"role": "user", "content": "Hi"}]
    response = await client.post(
        "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": messages}
    )
    assert response.json()["usage"]["prompt_tokens"] == chat_prompt_tokens(backend)


async def test_logprobs_have_openai_shape(client: httpx.AsyncClient) -> None:
    body = (await post_chat(client, max_tokens=2, logprobs=True, top_logprobs=2)).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert [entry["token"] for entry in content] == ["H", "e"]
    assert content[0]["logprob"] == -0.5
    assert content[0]["bytes"] == [72]
    assert len(content[0]["top_logprobs"]) == 2


async def test_informational_fields_are_accepted(client: httpx.AsyncClient) -> None:
    response = await post_chat(
        client, user="u1", metadata={"k": "v"}, store=False, service_tier="auto", seed=3
    )
    assert response.status_code == 200


async def test_extras_are_accepted(client: httpx.AsyncClient) -> None:
    response = await post_chat(
        client,
        top_k=5,
        min_p=0.1,
        repetition_penalty=1.1,
        stop_token_ids=[7],
        ignore_eos=True,
        max_tokens=40,
    )
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 40


async def test_default_max_tokens_is_the_remaining_context() -> None:
    small = FakeBackend(FAKE_MODEL, max_model_len=80)
    app = create_app(fake_config(FAKE_MODEL), {FAKE_MODEL: small}, OpenGatekeeper())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = (await post_chat(c, ignore_eos=True)).json()
    assert body["usage"]["total_tokens"] == 80
    assert body["choices"][0]["finish_reason"] == "length"

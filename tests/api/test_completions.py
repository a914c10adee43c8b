"""POST /v1/completions against the fake backend (byte tokens, BOS prepended)."""

from __future__ import annotations

import httpx

from llmserve.backends.fake import DEFAULT_REPLY

from .conftest import FAKE_MODEL


async def complete(client: httpx.AsyncClient, **fields: object) -> httpx.Response:
    return await client.post("/v1/completions", json={"model": FAKE_MODEL, **fields})


async def test_completion_counts_bos_and_prompt_bytes(client: httpx.AsyncClient) -> None:
    response = await complete(client, prompt="Once", max_tokens=6)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"] == [
        {"index": 0, "text": DEFAULT_REPLY[:6], "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 6,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_prompt_starting_with_bos_text_gets_one_bos(client: httpx.AsyncClient) -> None:
    # The fake decodes BOS as nothing, so "<s>" is plain text to it: 3 bytes + BOS.
    body = (await complete(client, prompt="<s>", max_tokens=1)).json()
    assert body["usage"]["prompt_tokens"] == 4


async def test_prompt_list_and_n_give_prompt_major_choices(client: httpx.AsyncClient) -> None:
    body = (await complete(client, prompt=["a", "bb"], n=2, max_tokens=2, echo=True)).json()
    assert [(c["index"], c["text"]) for c in body["choices"]] == [
        (0, "aHe"),
        (1, "aHe"),
        (2, "bbHe"),
        (3, "bbHe"),
    ]
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 8,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


async def test_completion_logprobs_have_openai_shape(client: httpx.AsyncClient) -> None:
    body = (await complete(client, prompt="x", max_tokens=3, logprobs=1)).json()
    logprobs = body["choices"][0]["logprobs"]
    assert logprobs["tokens"] == ["H", "e", "l"]
    assert logprobs["token_logprobs"] == [-0.5, -0.5, -0.5]
    assert logprobs["text_offset"] == [0, 1, 2]
    assert logprobs["top_logprobs"][0] == {"H": -0.5}


async def test_full_reply_finishes_with_stop(client: httpx.AsyncClient) -> None:
    body = (await complete(client, prompt="x")).json()
    assert body["choices"][0]["text"] == DEFAULT_REPLY
    assert body["choices"][0]["finish_reason"] == "stop"

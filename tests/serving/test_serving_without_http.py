"""Chat and completions run through the serving layer alone: no app, no request, no server."""

from __future__ import annotations

import pytest

from llmserve.backends.fake import DEFAULT_REPLY, FakeBackend
from llmserve.errors import ContextLengthExceededError
from llmserve.serving.chat import prepare_chat
from llmserve.serving.completions import prepare_completion
from llmserve.serving.context import ServingContext
from llmserve.serving.schemas import ChatCompletionRequest, CompletionRequest

MODEL = "org/fake-chat"
USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def context() -> ServingContext:
    return ServingContext("req_0123abcd", "key_alice", MODEL, FakeBackend(MODEL))


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": MODEL, "messages": USER, **fields})


async def test_chat_completion_body(context: ServingContext) -> None:
    generation = await prepare_chat(context, chat(max_tokens=5))
    assert generation.estimated_tokens == generation.meter.prompt_tokens + 5
    body = await generation.result()
    assert body["id"] == "chatcmpl-0123abcd"
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_REPLY[:5], "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    prompt_tokens = generation.meter.prompt_tokens
    assert prompt_tokens > 0
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 5,
        "total_tokens": prompt_tokens + 5,
        "prompt_tokens_details": {"cached_tokens": 0},  # the fake backend caches nothing
    }


async def test_chat_stream_chunks(context: ServingContext) -> None:
    request = chat(stream=True, stream_options={"include_usage": True})
    generation = await prepare_chat(context, request)
    chunks = [chunk async for chunk in generation.chunks()]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(
        chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]
    )
    assert text == DEFAULT_REPLY
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage is not None and usage["completion_tokens"] == len(DEFAULT_REPLY) + 1  # + EOS
    assert generation.meter.completion_tokens == usage["completion_tokens"]


async def test_chat_two_choices_with_logprobs(context: ServingContext) -> None:
    request = chat(n=2, max_tokens=4, logprobs=True, top_logprobs=2)
    body = await (await prepare_chat(context, request)).result()
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    for choice in body["choices"]:
        assert choice["message"]["content"] == DEFAULT_REPLY[:4]
        logprobs = choice["logprobs"]
        assert logprobs is not None
        assert [entry["token"] for entry in logprobs["content"]] == list(DEFAULT_REPLY[:4])
        assert all(len(entry["top_logprobs"]) == 2 for entry in logprobs["content"])
    assert body["usage"]["completion_tokens"] == 8


async def test_completions_of_two_prompts(context: ServingContext) -> None:
    request = CompletionRequest.model_validate(
        {"model": MODEL, "prompt": ["a", "b"], "max_tokens": 3, "echo": True}
    )
    generation = await prepare_completion(context, request)
    assert [r.request_id for r in generation.requests] == ["req_0123abcd-0", "req_0123abcd-1"]
    body = await generation.result()
    assert [choice["text"] for choice in body["choices"]] == [
        "a" + DEFAULT_REPLY[:3],
        "b" + DEFAULT_REPLY[:3],
    ]
    assert body["usage"]["completion_tokens"] == 6


async def test_a_prompt_over_the_context_fails_before_anything_runs(
    context: ServingContext,
) -> None:
    with pytest.raises(ContextLengthExceededError, match="maximum context length is 256 tokens"):
        await prepare_chat(context, chat(max_tokens=1000))

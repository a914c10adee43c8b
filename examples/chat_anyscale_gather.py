"""The ChatAnyscale notebook flow against llmserve: ask every chat model at once.

One system + human message goes to every chat model the server lists, concurrently with
asyncio.gather; the wall time is compared with the sum of per-request times.

    llmserve serve &
    python examples/chat_anyscale_gather.py

Environment: LLMSERVE_BASE_URL, LLMSERVE_API_KEY, LLMSERVE_EMBEDDING_MODELS (comma-separated
names to skip: embedding models cannot chat).
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings

from langchain_core.messages import HumanMessage, SystemMessage

# NOTE: ChatAnyscale lives only in langchain-community, which warns on import that it is sunset.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`langchain-community` is being sunset", DeprecationWarning)
    from langchain_community.chat_models import ChatAnyscale

BASE_URL = os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8000/v1")
API_KEY = os.environ.get("LLMSERVE_API_KEY", "llmserve")
EMBEDDING_MODELS = set(
    os.environ.get("LLMSERVE_EMBEDDING_MODELS", "sentence-transformers/all-MiniLM-L6-v2").split(",")
)
MESSAGES = [
    SystemMessage(content="You are a helpful AI that shares everything you know."),
    HumanMessage(content="Tell me technical facts about yourself. Are you a transformer model?"),
]


async def timed_answer(chat: ChatAnyscale) -> tuple[str, str, float]:
    start = time.perf_counter()
    message = await chat.ainvoke(MESSAGES)
    return chat.model_name, str(message.content), time.perf_counter() - start


async def main() -> None:
    models = ChatAnyscale.get_available_models(API_KEY, BASE_URL)
    chat_models = sorted(models - EMBEDDING_MODELS)
    print("available models:", sorted(models))
    chats = [
        ChatAnyscale(
            model_name=name,
            anyscale_api_base=BASE_URL,
            anyscale_api_key=API_KEY,
            temperature=1.0,
            max_tokens=32,
        )
        for name in chat_models
    ]
    start = time.perf_counter()
    answers = await asyncio.gather(*(timed_answer(chat) for chat in chats))
    wall = time.perf_counter() - start
    for name, text, seconds in answers:
        print(f"--- {name} ({seconds:.2f} s)\n{text}")
    total = sum(seconds for _, _, seconds in answers)
    print(f"wall time {wall:.2f} s for {len(answers)} requests; sum of request times {total:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())

"""The openai SDK against `llmserve serve`: a chat completion and a Llama-2 `[INST]` completion.

    llmserve serve &          # serves llmserve/tiny-chat on http://127.0.0.1:8000
    python examples/openai_sdk.py

Environment: LLMSERVE_BASE_URL, LLMSERVE_MODEL, LLMSERVE_API_KEY (any value on an open server).
"""

from __future__ import annotations

import os

from openai import OpenAI

BASE_URL = os.environ.get("LLMSERVE_BASE_URL", "http://127.0.0.1:8000/v1")
MODEL = os.environ.get("LLMSERVE_MODEL", "llmserve/tiny-chat")
API_KEY = os.environ.get("LLMSERVE_API_KEY", "llmserve")


def main() -> None:
    client = OpenAI(base_url=BASE_URL, api_key=API_KEY)

    chat = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one sentence."},
        ],
        max_tokens=32,
        temperature=0.7,
    )
    print("chat:", chat.choices[0].message.content)
    print("chat usage:", chat.usage)

    # A raw Llama-2 prompt: the [INST] markers are what the chat template would have produced.
    completion = client.completions.create(
        model=MODEL,
        prompt="[INST] <<SYS>>\nYou are concise.\n<</SYS>>\n\nName a primary colour. [/INST]",
        max_tokens=32,
        temperature=0,
    )
    print("completion:", completion.choices[0].text)
    print("completion usage:", completion.usage)


if __name__ == "__main__":
    main()

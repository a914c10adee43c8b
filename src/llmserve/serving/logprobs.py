"""OpenAI's two logprobs shapes: chat (`content` list) and text completions (parallel lists)."""

from __future__ import annotations

from collections.abc import Sequence

from llmserve.serving.wire import ChatLogprobs, CompletionLogprobs
from llmserve.types import TokenLogprob


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def chat_logprobs(logprobs: Sequence[TokenLogprob]) -> ChatLogprobs:
    """`choices[].logprobs` of a chat completion or chunk."""
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": _token_bytes(lp.token),
                "top_logprobs": [
                    {"token": top.token, "logprob": top.logprob, "bytes": _token_bytes(top.token)}
                    for top in lp.top_logprobs
                ],
            }
            for lp in logprobs
        ],
        "refusal": None,
    }


def completion_logprobs(logprobs: Sequence[TokenLogprob], text_offset: int) -> CompletionLogprobs:
    """`choices[].logprobs` of a text completion; offsets count from `text_offset`."""
    offsets: list[int] = []
    for lp in logprobs:
        offsets.append(text_offset)
        text_offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{top.token: top.logprob for top in lp.top_logprobs} for lp in logprobs],
        "text_offset": offsets,
    }

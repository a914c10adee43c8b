"""Tokenizer endpoints without HTTP, as vLLM has them: count and list tokens, or decode them."""

from __future__ import annotations

from typing import TypedDict

from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError
from llmserve.serving.prompts import chat_prompt_ids, encode_bounded, off_loop
from llmserve.serving.schemas_tokenize import DetokenizeRequest, TokenizeRequest
from llmserve.types import ChatMessage


class TokenizeResult(TypedDict):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeResult(TypedDict):
    prompt: str


async def tokenize(backend: Backend, body: TokenizeRequest) -> TokenizeResult:
    """The tokens of a prompt, or of messages counted exactly as chat usage counts them."""
    body.check()
    tokens = await off_loop(token_ids, backend, body)
    return {"count": len(tokens), "max_model_len": backend.info.max_model_len, "tokens": tokens}


def token_ids(backend: Backend, body: TokenizeRequest) -> list[int]:
    """The prompt's tokens, or the messages rendered as the chat endpoint renders them."""
    if body.messages is None:
        prompt = body.prompt or ""
        return encode_bounded(
            backend, prompt, add_special_tokens=body.add_special_tokens, param="prompt"
        )
    if not body.add_generation_prompt:
        raise InvalidRequestError(
            "Only `add_generation_prompt: true` is supported.", param="add_generation_prompt"
        )
    messages = [ChatMessage(m.role, m.text) for m in body.messages]
    return chat_prompt_ids(backend, messages, "messages")


def detokenize(backend: Backend, body: DetokenizeRequest) -> DetokenizeResult:
    """The text of a list of token ids; ids the tokenizer cannot decode are a 400."""
    try:
        return {"prompt": backend.decode(body.tokens)}
    except (ValueError, OverflowError, IndexError, TypeError) as exc:
        raise InvalidRequestError(f"Invalid token ids: {exc}", param="tokens") from None

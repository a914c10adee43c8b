"""POST /tokenize and POST /detokenize, as vLLM's OpenAI server has them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from llmserve.api.admission import route_request
from llmserve.api.generation import chat_prompt_ids, encode_bounded, off_loop
from llmserve.api.openapi import request_body
from llmserve.api.schemas_tokenize import DetokenizeRequest, TokenizeRequest
from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError
from llmserve.types import ChatMessage

router = APIRouter()


def _token_ids(backend: Backend, body: TokenizeRequest) -> list[int]:
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


@router.post("/tokenize", openapi_extra=request_body(TokenizeRequest))
async def tokenize(request: Request) -> dict[str, Any]:
    """{count, max_model_len, tokens} for a prompt or chat messages."""
    routed = await route_request(request, TokenizeRequest, kind=None)
    body, backend = routed.body, routed.backend
    body.check()
    tokens = await off_loop(_token_ids, backend, body)
    return {"count": len(tokens), "max_model_len": backend.info.max_model_len, "tokens": tokens}


@router.post("/detokenize", openapi_extra=request_body(DetokenizeRequest))
async def detokenize(request: Request) -> dict[str, Any]:
    """{prompt} for a list of token ids."""
    routed = await route_request(request, DetokenizeRequest, kind=None)
    body, backend = routed.body, routed.backend
    try:
        return {"prompt": backend.decode(body.tokens)}
    except (ValueError, OverflowError, IndexError, TypeError) as exc:
        raise InvalidRequestError(f"Invalid token ids: {exc}", param="tokens") from None

"""POST /tokenize and POST /detokenize, as vLLM's OpenAI server has them."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request

from llmserve.api.admission import parse_body, server_state
from llmserve.api.generation import chat_prompt_ids
from llmserve.api.schemas import ModelRequest
from llmserve.api.schemas_tokenize import DetokenizeRequest, TokenizeRequest
from llmserve.backends.base import Backend, ChatMessage
from llmserve.errors import InvalidRequestError, ModelNotFoundError

router = APIRouter()
M = TypeVar("M", bound=ModelRequest)


async def _parse(request: Request, schema: type[M]) -> tuple[M, Backend]:
    """Authenticate, parse the body, and find its model's backend (401, 400, 404)."""
    state = server_state(request)
    principal = await state.gatekeeper.authenticate(request.headers.get("authorization"))
    body = await parse_body(request, schema)
    backend = state.backends.get(body.model)
    if backend is None or not principal.can_use_model(body.model):
        raise ModelNotFoundError(body.model)
    return body, backend


def _token_ids(backend: Backend, body: TokenizeRequest) -> list[int]:
    """The prompt's tokens, or the messages rendered as the chat endpoint renders them."""
    if body.messages is None:
        return backend.encode(body.prompt or "", add_special_tokens=body.add_special_tokens)
    if not body.add_generation_prompt:
        raise InvalidRequestError(
            "Only `add_generation_prompt: true` is supported.", param="add_generation_prompt"
        )
    messages = [ChatMessage(m.role, m.text) for m in body.messages]
    return chat_prompt_ids(backend, messages, "messages")


@router.post("/tokenize")
async def tokenize(request: Request) -> dict[str, Any]:
    """{count, max_model_len, tokens} for a prompt or chat messages."""
    body, backend = await _parse(request, TokenizeRequest)
    body.check()
    tokens = _token_ids(backend, body)
    return {"count": len(tokens), "max_model_len": backend.info.max_model_len, "tokens": tokens}


@router.post("/detokenize")
async def detokenize(request: Request) -> dict[str, Any]:
    """{prompt} for a list of token ids."""
    body, backend = await _parse(request, DetokenizeRequest)
    try:
        return {"prompt": backend.decode(body.tokens)}
    except (ValueError, OverflowError, IndexError, TypeError) as exc:
        raise InvalidRequestError(f"Invalid token ids: {exc}", param="tokens") from None

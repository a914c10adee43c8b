"""POST /v1/chat/completions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmserve.api.admission import Routed, acquire_slot, route_request
from llmserve.api.generation import (
    Choice,
    chat_prompt_ids,
    check_context,
    check_not_aborted,
    merge_outputs,
    off_loop,
    sampling_params,
)
from llmserve.api.logprobs import chat_logprobs
from llmserve.api.openapi import request_body
from llmserve.api.respond import Outputs, respond, response_base, usage_body
from llmserve.api.schemas import ChatCompletionRequest
from llmserve.api.sse import UsageMeter
from llmserve.errors import InvalidRequestError
from llmserve.types import ChatMessage, GenerateRequest

router = APIRouter()


def prompt_token_ids(routed: Routed[ChatCompletionRequest]) -> list[int]:
    """The conversation's prompt tokens."""
    messages = [ChatMessage(m.role, m.text) for m in routed.body.messages]
    return chat_prompt_ids(routed.backend, messages, "messages")


def requested_logprobs(body: ChatCompletionRequest) -> int | None:
    """How many top logprobs to return per token, or None for no logprobs."""
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequestError(
            "`top_logprobs` requires `logprobs` to be true.", param="top_logprobs"
        )
    return (body.top_logprobs or 0) if body.logprobs else None


@router.post(
    "/v1/chat/completions", openapi_extra=request_body(ChatCompletionRequest, streams=True)
)
async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions, streaming or not."""
    routed = await route_request(request, ChatCompletionRequest, kind="chat")
    body = routed.body
    body.reject_unsupported()
    ids = await off_loop(prompt_token_ids, routed)
    max_tokens = body.max_completion_tokens or body.max_tokens
    max_tokens = check_context(len(ids), max_tokens, routed.backend.info.max_model_len, "messages")
    sampling = sampling_params(body, max_tokens, requested_logprobs(body))
    generate = GenerateRequest(
        routed.request_id, tuple(ids), sampling, tenant=routed.principal.key_id
    )
    meter = UsageMeter(routed.model, prompt_tokens=len(ids))
    slot = await acquire_slot(request, routed, len(ids) + max_tokens * body.n)
    return await respond(
        request,
        slot=slot,
        meter=meter,
        outputs=merge_outputs(routed.backend, [generate], body.n),
        num_choices=body.n,
        stream=body.stream,
        to_chunks=lambda outputs: chat_chunks(routed, outputs, meter),
        to_body=lambda choices: chat_body(routed, choices, meter),
    )


def chat_body(
    routed: Routed[ChatCompletionRequest], choices: list[Choice], meter: UsageMeter
) -> dict[str, Any]:
    """The non-streaming response."""
    base = response_base("chatcmpl", routed.request_id, "chat.completion", routed.model)
    return {
        **base,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": choice.text, "refusal": None},
                "logprobs": chat_logprobs(choice.logprobs) if routed.body.logprobs else None,
                "finish_reason": choice.finish_reason,
            }
            for index, choice in enumerate(choices)
        ],
        "usage": usage_body(meter),
    }


async def chat_chunks(
    routed: Routed[ChatCompletionRequest], outputs: Outputs, meter: UsageMeter
) -> AsyncGenerator[dict[str, Any], None]:
    """Streamed chunks: a role delta per choice, content deltas, a finish chunk, maybe usage."""
    body = routed.body
    base = response_base("chatcmpl", routed.request_id, "chat.completion.chunk", routed.model)
    usage_field: dict[str, Any] = {"usage": None} if body.include_usage else {}

    def chunk(
        index: int, delta: dict[str, Any], finish: str | None, logprobs: Any
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**base, "choices": [choice], **usage_field}

    for index in range(body.n):
        yield chunk(index, {"role": "assistant", "content": ""}, None, None)
    num_output_tokens = [0] * body.n
    async with contextlib.aclosing(outputs):
        async for index, output in outputs:
            check_not_aborted(output)
            num_output_tokens[index] = output.num_output_tokens
            meter.completion_tokens = sum(num_output_tokens)
            if output.text or output.logprobs:
                logprobs = chat_logprobs(output.logprobs or ()) if body.logprobs else None
                yield chunk(index, {"content": output.text}, None, logprobs)
            if output.finish_reason is not None:
                yield chunk(index, {}, output.finish_reason, None)
    if body.include_usage:
        yield {**base, "choices": [], "usage": usage_body(meter)}

"""POST /v1/completions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmserve.api.admission import Routed, acquire_slot, route_request
from llmserve.api.generation import (
    Choice,
    check_context,
    check_not_aborted,
    encode_bounded,
    merge_outputs,
    off_loop,
    sampling_params,
)
from llmserve.api.logprobs import completion_logprobs
from llmserve.api.openapi import request_body
from llmserve.api.respond import Outputs, respond, response_base, usage_body
from llmserve.api.schemas import CompletionRequest
from llmserve.api.sse import UsageMeter
from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError
from llmserve.types import GenerateRequest

router = APIRouter()


def encode_prompt(backend: Backend, prompt: str) -> list[int]:
    """Tokens of a raw prompt, with the model's special prefix (BOS) exactly once."""
    ids = encode_bounded(backend, prompt, add_special_tokens=True, param="prompt")
    prefix = backend.encode("", add_special_tokens=True)
    # NOTE: a prompt that already starts with the BOS text would otherwise get two BOS tokens.
    if prefix and ids[: 2 * len(prefix)] == prefix * 2:
        ids = ids[len(prefix) :]
    if not ids:
        raise InvalidRequestError("The prompt must not be empty.", param="prompt")
    return ids


def check_supported(body: CompletionRequest) -> None:
    """400 for completion options this server does not implement."""
    body.reject_unsupported()
    if body.suffix:
        raise InvalidRequestError("`suffix` is not supported by this server.", param="suffix")
    if body.best_of not in (None, body.n):
        raise InvalidRequestError("`best_of` is not supported by this server.", param="best_of")
    if body.echo and body.logprobs is not None:
        raise InvalidRequestError(
            "`echo` together with `logprobs` is not supported by this server.", param="echo"
        )


@router.post("/v1/completions", openapi_extra=request_body(CompletionRequest, streams=True))
async def create_completion(request: Request) -> Response:
    """OpenAI text completions: one choice per prompt and `n`, streaming or not."""
    routed = await route_request(request, CompletionRequest, kind="chat")
    body = routed.body
    check_supported(body)
    max_model_len = routed.backend.info.max_model_len
    generates: list[GenerateRequest] = []
    for position, prompt in enumerate(body.prompts):
        ids = await off_loop(encode_prompt, routed.backend, prompt)
        max_tokens = check_context(len(ids), body.max_tokens, max_model_len, "prompt")
        request_id = (
            routed.request_id if len(body.prompts) == 1 else f"{routed.request_id}-{position}"
        )
        sampling = sampling_params(body, max_tokens, body.logprobs)
        generates.append(
            GenerateRequest(request_id, tuple(ids), sampling, tenant=routed.principal.key_id)
        )
    num_prompt_tokens = sum(len(g.prompt_token_ids) for g in generates)
    meter = UsageMeter(routed.model, prompt_tokens=num_prompt_tokens)
    estimate = num_prompt_tokens + sum(g.sampling.max_tokens for g in generates) * body.n
    slot = await acquire_slot(request, routed, estimate)
    return await respond(
        request,
        slot=slot,
        meter=meter,
        outputs=merge_outputs(routed.backend, generates, body.n),
        num_choices=len(generates) * body.n,
        stream=body.stream,
        to_chunks=lambda outputs: completion_chunks(routed, outputs, meter),
        to_body=lambda choices: completion_body(routed, choices, meter),
    )


def echoed(body: CompletionRequest, index: int) -> str:
    """The prompt text echoed before choice `index`, or "" without `echo`."""
    return body.prompts[index // body.n] if body.echo else ""


def completion_body(
    routed: Routed[CompletionRequest], choices: list[Choice], meter: UsageMeter
) -> dict[str, Any]:
    """The non-streaming response."""
    body = routed.body
    base = response_base("cmpl", routed.request_id, "text_completion", routed.model)
    return {
        **base,
        "choices": [
            {
                "index": index,
                "text": echoed(body, index) + choice.text,
                "logprobs": (
                    completion_logprobs(choice.logprobs, 0) if body.logprobs is not None else None
                ),
                "finish_reason": choice.finish_reason,
            }
            for index, choice in enumerate(choices)
        ],
        "usage": usage_body(meter),
    }


async def completion_chunks(
    routed: Routed[CompletionRequest], outputs: Outputs, meter: UsageMeter
) -> AsyncGenerator[dict[str, Any], None]:
    """Streamed chunks: text deltas (the echoed prompt first), a finish chunk, maybe usage."""
    body = routed.body
    num_choices = len(body.prompts) * body.n
    base = response_base("cmpl", routed.request_id, "text_completion", routed.model)
    usage_field: dict[str, Any] = {"usage": None} if body.include_usage else {}

    def chunk(index: int, text: str, finish: str | None, logprobs: Any) -> dict[str, Any]:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {**base, "choices": [choice], **usage_field}

    if body.echo:
        for index in range(num_choices):
            yield chunk(index, echoed(body, index), None, None)
    num_output_tokens = [0] * num_choices
    text_offsets = [0] * num_choices
    async with contextlib.aclosing(outputs):
        async for index, output in outputs:
            check_not_aborted(output)
            num_output_tokens[index] = output.num_output_tokens
            meter.completion_tokens = sum(num_output_tokens)
            if output.text or output.logprobs:
                logprobs = None
                if body.logprobs is not None:
                    logprobs = completion_logprobs(output.logprobs or (), text_offsets[index])
                text_offsets[index] += len(output.text)
                yield chunk(index, output.text, None, logprobs)
            if output.finish_reason is not None:
                yield chunk(index, "", output.finish_reason, None)
    if body.include_usage:
        yield {**base, "choices": [], "usage": usage_body(meter)}

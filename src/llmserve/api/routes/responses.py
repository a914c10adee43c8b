"""POST /v1/responses and GET /v1/responses/{id}: the Responses API on chat models.

Generation goes through the same admission and `Backend.generate` as chat completions. Stored
responses live in the app's `ResponseStore` (in memory, bounded; see api/response_store.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llmserve.api.admission import Routed, acquire_slot, route_request, server_state
from llmserve.api.generation import (
    Choice,
    chat_prompt_ids,
    check_context,
    check_not_aborted,
    merge_outputs,
)
from llmserve.api.respond import Outputs, respond
from llmserve.api.response_store import ResponseStore
from llmserve.api.schemas_responses import (
    ResponseCreateRequest,
    output_message,
    output_text_part,
    response_object,
    usage,
)
from llmserve.api.sse import RESPONSES_SSE, UsageMeter
from llmserve.backends.base import GenerateRequest, SamplingParams
from llmserve.errors import NotFoundError

router = APIRouter()
ResponsesRouted = Routed[ResponseCreateRequest]


def response_store(request: Request) -> ResponseStore:
    """The app's store of responses."""
    store: ResponseStore = request.app.state.response_store
    return store


def prompt_token_ids(routed: ResponsesRouted) -> list[int]:
    """Instructions and input rendered with the chat template, then tokenized."""
    return chat_prompt_ids(routed.backend, routed.body.chat_messages(), "input")


def sampling(body: ResponseCreateRequest, max_tokens: int) -> SamplingParams:
    """Sampling parameters for a Responses request."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
    )


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    """OpenAI Responses: text in, one assistant message out, streaming or not."""
    routed = await route_request(request, ResponseCreateRequest, kind="chat")
    body = routed.body
    body.reject_unsupported()
    ids = prompt_token_ids(routed)
    max_model_len = routed.backend.info.max_model_len
    max_tokens = check_context(len(ids), body.max_output_tokens, max_model_len, "input")
    generate = GenerateRequest(
        routed.request_id, tuple(ids), sampling(body, max_tokens), tenant=routed.principal.key_id
    )
    meter = UsageMeter(routed.model, prompt_tokens=len(ids))
    slot = await acquire_slot(request, routed, len(ids) + max_tokens)
    store = response_store(request) if body.store else None
    return await respond(
        request,
        slot=slot,
        meter=meter,
        outputs=merge_outputs(routed.backend, [generate], 1),
        num_choices=1,
        stream=body.stream,
        to_chunks=lambda outputs: response_events(routed, outputs, meter, store),
        to_body=lambda choices: final_response(routed, choices[0], meter, store),
        sse_format=RESPONSES_SSE,
    )


@router.get("/v1/responses/{response_id}")
async def retrieve_response(response_id: str, request: Request) -> dict[str, Any]:
    """A stored response made by the same API key; 404 otherwise."""
    principal = await server_state(request).gatekeeper.authenticate(
        request.headers.get("authorization")
    )
    stored = response_store(request).get(principal.key_id, response_id)
    if stored is None:
        raise NotFoundError(f"No response found with id '{response_id}'.", param="response_id")
    return stored


def ids_of(routed: ResponsesRouted) -> tuple[str, str]:
    """The response id and its message item id."""
    suffix = routed.request_id.removeprefix("req_")
    return f"resp_{suffix}", f"msg_{suffix}"


def final_response(
    routed: ResponsesRouted, choice: Choice, meter: UsageMeter, store: ResponseStore | None
) -> dict[str, Any]:
    """The finished Response object (stored when `store` is set)."""
    response_id, item_id = ids_of(routed)
    is_complete = choice.finish_reason != "length"
    response = response_object(
        response_id,
        routed.body,
        status="completed" if is_complete else "incomplete",
        output=[output_message(item_id, choice.text, "completed")],
        usage_body=usage(meter.prompt_tokens, choice.num_output_tokens, meter.cached_tokens),
        incomplete_reason=None if is_complete else "max_output_tokens",
    )
    if store is not None:
        store.put(routed.principal.key_id, response)
    return response


async def response_events(
    routed: ResponsesRouted, outputs: Outputs, meter: UsageMeter, store: ResponseStore | None
) -> AsyncGenerator[dict[str, Any], None]:
    """The event sequence of a streamed response, each event with its `sequence_number`."""
    response_id, item_id = ids_of(routed)
    pending = response_object(
        response_id, routed.body, status="in_progress", output=[], usage_body=None
    )
    where: dict[str, Any] = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": output_message(item_id, "", "in_progress"),
        },
        {"type": "response.content_part.added", **where, "part": output_text_part("")},
    ]
    number = 0
    for event in events:
        yield {**event, "sequence_number": number}
        number += 1
    choice = Choice()
    async with contextlib.aclosing(outputs):
        async for _, output in outputs:
            check_not_aborted(output)
            choice.add(output)
            meter.completion_tokens = output.num_output_tokens
            if output.text:
                delta = {"type": "response.output_text.delta", **where, "delta": output.text}
                yield {**delta, "logprobs": [], "sequence_number": number}
                number += 1
    for event in closing_events(routed, choice, meter, store):
        yield {**event, "sequence_number": number}
        number += 1


def closing_events(
    routed: ResponsesRouted, choice: Choice, meter: UsageMeter, store: ResponseStore | None
) -> list[dict[str, Any]]:
    """text done, part done, item done, then completed (or incomplete at max_output_tokens)."""
    _, item_id = ids_of(routed)
    where: dict[str, Any] = {"item_id": item_id, "output_index": 0, "content_index": 0}
    final = final_response(routed, choice, meter, store)
    last = "response.completed" if final["status"] == "completed" else "response.incomplete"
    return [
        {"type": "response.output_text.done", **where, "text": choice.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": output_text_part(choice.text)},
        {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
        {"type": last, "response": final},
    ]

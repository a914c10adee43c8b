"""One batch line through the serving layer, with no HTTP request around it.

A line the endpoint rejects (a 4xx) becomes an error-file line carrying that status and body,
exactly as the endpoint would have answered it (its body is read by the endpoint's own
`parse_body`); the other lines of the batch still run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from llmserve.errors import InvalidRequestError, LlmserveError, ServerError
from llmserve.jobs.wire import EndpointBody, RequestBody
from llmserve.serving.chat import prepare_chat
from llmserve.serving.completions import prepare_completion
from llmserve.serving.context import ServingContext
from llmserve.serving.embeddings import prepare_embeddings
from llmserve.serving.request_body import parse_body
from llmserve.serving.responses import ResponseStores, prepare_response
from llmserve.serving.schemas import ChatCompletionRequest, CompletionRequest
from llmserve.serving.schemas_embeddings import EmbeddingRequest
from llmserve.serving.schemas_responses import ResponseCreateRequest
from llmserve.serving.usage import UsageMeter

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LineOutcome:
    """What the endpoint answered for one line, and the tokens it used."""

    status_code: int
    body: EndpointBody
    meter: UsageMeter


async def run_line(context: ServingContext, endpoint: str, body: RequestBody) -> LineOutcome:
    """The endpoint's answer to `body`: 200 and its body, or an error status and error body."""
    meter = UsageMeter(context.model)
    try:
        return await _run(context, endpoint, body)
    except LlmserveError as error:
        if error.status_code >= 500:
            logger.error("batch line %s failed: %s", context.request_id, error.message)
        return LineOutcome(error.status_code, error.to_body(), meter)
    except Exception:
        logger.exception("batch line %s failed", context.request_id)
        failure = ServerError(f"The server had an error on request {context.request_id}.")
        return LineOutcome(failure.status_code, failure.to_body(), meter)


async def _run(context: ServingContext, endpoint: str, body: RequestBody) -> LineOutcome:
    if endpoint == "/v1/embeddings":
        job = prepare_embeddings(context, parse(EmbeddingRequest, body))
        return LineOutcome(200, await job.run(), job.meter)
    if endpoint == "/v1/chat/completions":
        chat = await prepare_chat(context, parse(ChatCompletionRequest, body))
        return LineOutcome(200, await chat.result(), chat.meter)
    if endpoint == "/v1/completions":
        completion = await prepare_completion(context, parse(CompletionRequest, body))
        return LineOutcome(200, await completion.result(), completion.meter)
    request = parse(ResponseCreateRequest, body)
    if request.background:
        raise InvalidRequestError("Batch lines cannot be background responses.", param="background")
    response = await prepare_response(
        context, request.model_copy(update={"store": False}), ResponseStores()
    )
    return LineOutcome(200, await response.result(), response.meter)


def parse(schema: type[M], body: RequestBody) -> M:
    """The line's body read as the endpoint reads its JSON body (the same 400 when it is bad)."""
    return parse_body(schema, json.dumps(body))

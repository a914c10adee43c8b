"""`Generation`: a validated, tokenized request, ready to run as one body or as a chunk stream.

Every generating endpoint (chat, completions, responses) prepares one; the HTTP layer admits it by
`estimated_tokens`, then answers with `result()` or frames `chunks()` as SSE. A batch runner or a
background job calls the same two methods with no HTTP request around them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from llmserve.backends.base import Backend
from llmserve.ids import derived_id
from llmserve.serving.context import ServingContext
from llmserve.serving.outputs import Choice, Outputs, collect, merge_outputs
from llmserve.serving.usage import UsageMeter
from llmserve.types import GenerateRequest

BodyT = TypeVar("BodyT")
ChunkT = TypeVar("ChunkT")
RequestT = TypeVar("RequestT")


@dataclass
class Generation(Generic[BodyT, ChunkT]):
    """Generate requests sharing one answer: `requests` x `n` choices, metered by `meter`.

    Run it once: `await result()` for the whole body, or iterate `chunks()` for a stream (the
    meter then counts completion tokens as they arrive). Closing `chunks()` early aborts every
    request in the backend.
    """

    backend: Backend
    requests: list[GenerateRequest]
    n: int
    meter: UsageMeter
    to_body: Callable[[list[Choice]], BodyT]
    to_chunks: Callable[[Outputs], AsyncGenerator[ChunkT, None]]
    # Sees every output on its way to the body or the chunks (the API layer's metrics).
    watch: Callable[[Outputs], Outputs] | None = None
    # Called with the finished body before `result()` returns it (the Responses API stores it).
    keep: Callable[[BodyT], Awaitable[None]] | None = None

    @property
    def estimated_tokens(self) -> int:
        """What admission charges up front: the prompts plus every token the choices may make."""
        num_output_tokens = sum(r.sampling.max_tokens for r in self.requests) * self.n
        return self.meter.prompt_tokens + num_output_tokens

    async def result(self) -> BodyT:
        """Run every choice to the end and build the response body."""
        choices = await collect(self._outputs(), self.num_choices)
        self.meter.completion_tokens = sum(choice.num_output_tokens for choice in choices)
        body = self.to_body(choices)
        if self.keep is not None:
            await self.keep(body)
        return body

    def chunks(self) -> AsyncGenerator[ChunkT, None]:
        """The response as stream chunks, in order."""
        return self.to_chunks(self._outputs())

    @property
    def num_choices(self) -> int:
        """Choices in the answer: `n` per request."""
        return len(self.requests) * self.n

    def _outputs(self) -> Outputs:
        outputs = counting_cached_tokens(merge_outputs(self.backend, self.requests, self.n), self)
        return outputs if self.watch is None else self.watch(outputs)


@dataclass
class Answer(Generic[RequestT]):
    """What a chat or text completion is built from: its public id, time, model and request."""

    id: str
    created: int
    model: str
    request: RequestT
    meter: UsageMeter

    @classmethod
    def start(
        cls, prefix: str, context: ServingContext, request: RequestT, meter: UsageMeter
    ) -> Self:
        """The answer to `request`, created now, with an id made from the server's request id."""
        return cls(
            response_id(prefix, context.request_id), created_now(), context.model, request, meter
        )


async def counting_cached_tokens(outputs: Outputs, generation: Generation[Any, Any]) -> Outputs:
    """`outputs`, noting in the meter what each prompt found in the prefix cache."""
    async with contextlib.aclosing(outputs):
        async for index, output in outputs:
            generation.meter.count_cached_tokens(output)
            yield index, output


def response_id(prefix: str, request_id: str) -> str:
    """The public id of a response made for `request_id` (`chatcmpl-…`, `cmpl-…`)."""
    return derived_id(f"{prefix}-", request_id)


def created_now() -> int:
    """`created`: seconds since the epoch."""
    return int(time.time())

"""Backend outputs of one or more generate requests: merged as choices, or collected whole."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

import anyio

from llmserve.backends.base import Backend
from llmserve.errors import OverloadedError
from llmserve.types import FinishReason, GenerateOutput, GenerateRequest, TokenLogprob

# (choice index, output) pairs; closing the generator aborts every request behind it.
Outputs = AsyncGenerator[tuple[int, GenerateOutput], None]


@dataclass
class Choice:
    """One choice's text, tokens and logprobs, accumulated from output deltas."""

    text: str = ""
    num_output_tokens: int = 0
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, output: GenerateOutput) -> None:
        """Append one delta."""
        self.text += output.text
        self.num_output_tokens = output.num_output_tokens
        self.finish_reason = output.finish_reason or self.finish_reason
        self.logprobs.extend(output.logprobs or ())


def check_not_aborted(output: GenerateOutput) -> None:
    """A backend that aborts (shutting down) fails the request with a 503."""
    if output.finish_reason == "abort":
        raise OverloadedError("The server is shutting down; please retry.")


async def close_iterator(iterator: AsyncIterator[object]) -> None:
    """Close an async generator (aborting its backend request), shielded from cancellation."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


async def merge_outputs(backend: Backend, requests: Sequence[GenerateRequest], n: int) -> Outputs:
    """Outputs of several requests as (choice index, output); choice = request position * n + index.

    Closing this generator closes every backend generator, which aborts their requests.
    """
    iterators = [backend.generate(r) for r in requests]
    queue: asyncio.Queue[tuple[int, GenerateOutput] | BaseException | None] = asyncio.Queue()

    async def pump(position: int, iterator: AsyncIterator[GenerateOutput]) -> None:
        try:
            async for output in iterator:
                await queue.put((position * n + output.index, output))
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which maps it to an error body
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(i, it)) for i, it in enumerate(iterators)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)
        for iterator in iterators:
            await close_iterator(iterator)


async def collect(outputs: Outputs, num_choices: int) -> list[Choice]:
    """Every choice of a finished generation."""
    choices = [Choice() for _ in range(num_choices)]
    async with contextlib.aclosing(outputs):
        async for index, output in outputs:
            check_not_aborted(output)
            choices[index].add(output)
    return choices

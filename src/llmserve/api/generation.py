"""From a validated request to backend outputs: sampling, context checks, merging, collecting."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import anyio
from fastapi import Request
from jinja2 import TemplateError

from llmserve.api.schemas import SamplingFields
from llmserve.backends.base import Backend
from llmserve.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    OverloadedError,
    UnsupportedOperationError,
)
from llmserve.sampling import SamplingParams
from llmserve.types import ChatMessage, FinishReason, GenerateOutput, GenerateRequest, TokenLogprob

P = ParamSpec("P")
T = TypeVar("T")


def chat_prompt_ids(backend: Backend, messages: Sequence[ChatMessage], param: str) -> list[int]:
    """The chat template applied to `messages`, tokenized without extra special tokens.

    Chat, Responses and /tokenize all count a conversation's tokens here, so their numbers agree.
    CPU-bound: routes call it through `off_loop`.
    """
    # NOTE: "developer" is OpenAI's newer name for "system"; chat templates know only "system".
    renamed = [
        ChatMessage("system" if m.role == "developer" else m.role, m.content) for m in messages
    ]
    try:
        text = backend.render_chat(renamed)
    except (UnsupportedOperationError, TemplateError, ValueError) as exc:
        raise InvalidRequestError(f"Invalid {param}: {exc}", param=param) from None
    return encode_bounded(backend, text, add_special_tokens=False, param=param)


# NOTE: tokens a prefix cut can merge or split at its end; far fewer than this in any tokenizer.
_PREFIX_CUT_SLACK = 64


def encode_bounded(
    backend: Backend, text: str, *, add_special_tokens: bool, param: str
) -> list[int]:
    """`backend.encode(text)`, but a text far over the context costs only a prefix's tokenizing.

    A prefix of (max_model_len + slack) x the model's longest token holds at least that many
    tokens unless the tokenizer drops characters; when it does hold them, the whole text cannot
    fit and is refused without tokenizing the rest (megabytes would take seconds).
    """
    info = backend.info
    if info.max_chars_per_token is not None:
        num_chars = (info.max_model_len + _PREFIX_CUT_SLACK) * info.max_chars_per_token
        if len(text) > num_chars:
            prefix_ids = backend.encode(text[:num_chars], add_special_tokens=add_special_tokens)
            if len(prefix_ids) >= info.max_model_len + _PREFIX_CUT_SLACK // 2:
                raise too_long(info.max_model_len, param)
    return backend.encode(text, add_special_tokens=add_special_tokens)


def too_long(max_model_len: int, param: str) -> ContextLengthExceededError:
    """A 400 for a prompt known to exceed the context without counting all of its tokens."""
    what = "messages" if param == "messages" else "prompt"
    return ContextLengthExceededError(
        f"This model's maximum context length is {max_model_len} tokens. However, your {what} "
        f"resulted in more than {max_model_len} tokens. Please reduce the length of the {what}.",
        param=param,
    )


async def off_loop(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run CPU-bound work (templates, tokenizing) in a worker thread, keeping the loop free."""
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


def check_context(
    num_prompt_tokens: int, max_tokens: int | None, max_model_len: int, param: str
) -> int:
    """The max_tokens to use (the remaining context when None); 400 when it does not fit."""
    what = "messages" if param == "messages" else "prompt"
    if num_prompt_tokens >= max_model_len:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"{what} resulted in {num_prompt_tokens} tokens. "
            f"Please reduce the length of the {what}.",
            param=param,
        )
    if max_tokens is None:
        return max_model_len - num_prompt_tokens
    if num_prompt_tokens + max_tokens > max_model_len:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {num_prompt_tokens + max_tokens} tokens ({num_prompt_tokens} in the "
            f"{what}, {max_tokens} in the completion). Please reduce the length of the {what} "
            "or completion.",
            param=param,
        )
    return max_tokens


def sampling_params(body: SamplingFields, max_tokens: int, logprobs: int | None) -> SamplingParams:
    """The backend's sampling parameters for a request body."""
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=max(body.top_k, 0),  # -1 (vLLM's "disabled") and 0 both disable top-k
            min_p=body.min_p,
            seed=body.seed,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty,
            stop=body.stop_strings,
            stop_token_ids=tuple(body.stop_token_ids),
            ignore_eos=body.ignore_eos,
            n=body.n,
            logprobs=logprobs,
        )
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None


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


async def merge_outputs(
    backend: Backend, requests: Sequence[GenerateRequest], n: int
) -> AsyncGenerator[tuple[int, GenerateOutput], None]:
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


async def collect(
    outputs: AsyncGenerator[tuple[int, GenerateOutput], None], num_choices: int
) -> list[Choice]:
    """Every choice of a finished generation."""
    choices = [Choice() for _ in range(num_choices)]
    async with contextlib.aclosing(outputs):
        async for index, output in outputs:
            check_not_aborted(output)
            choices[index].add(output)
    return choices


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client goes away (the body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def collect_unless_disconnected(
    request: Request, outputs: AsyncGenerator[tuple[int, GenerateOutput], None], num_choices: int
) -> list[Choice] | None:
    """`collect`, or None as soon as the client disconnects (the generation is then aborted)."""
    collecting = asyncio.create_task(collect(outputs, num_choices))
    watching = asyncio.create_task(wait_for_disconnect(request))
    try:
        await asyncio.wait({collecting, watching}, return_when=asyncio.FIRST_COMPLETED)
        return collecting.result() if collecting.done() else None
    finally:
        for task in (collecting, watching):
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(collecting, watching, return_exceptions=True)

"""From request text to prompt tokens: chat templates, tokenizing, and the context-length check.

Tokenizing is CPU-bound: callers on an event loop run these through `off_loop`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import anyio
from jinja2 import TemplateError

from llmserve.backends.base import Backend
from llmserve.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    UnsupportedOperationError,
)
from llmserve.types import ChatMessage

P = ParamSpec("P")
T = TypeVar("T")


def chat_prompt_ids(
    backend: Backend,
    messages: Sequence[ChatMessage],
    param: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[int]:
    """The chat template applied to `messages` (and `tools`), tokenized without special tokens.

    Chat, Responses and /tokenize all count a conversation's tokens here, so their numbers agree.
    CPU-bound: routes call it through `off_loop`.
    """
    # NOTE: "developer" is OpenAI's newer name for "system"; chat templates know only "system".
    renamed = [
        dataclasses.replace(m, role="system") if m.role == "developer" else m for m in messages
    ]
    try:
        text = backend.render_chat(renamed, tools) if tools else backend.render_chat(renamed)
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


def encode_prompt(backend: Backend, prompt: str) -> list[int]:
    """Tokens of a raw completion prompt, with the model's special prefix (BOS) exactly once."""
    ids = encode_bounded(backend, prompt, add_special_tokens=True, param="prompt")
    prefix = backend.encode("", add_special_tokens=True)
    # NOTE: a prompt that already starts with the BOS text would otherwise get two BOS tokens.
    if prefix and ids[: 2 * len(prefix)] == prefix * 2:
        ids = ids[len(prefix) :]
    if not ids:
        raise InvalidRequestError("The prompt must not be empty.", param="prompt")
    return ids

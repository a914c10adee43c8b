"""OpenAI request schemas for chat and text completions.

Every body is read strictly, with OpenAI's types and ranges: `true` is no integer, "yes" is no
boolean, numbers are finite, and each bound keeps the sampler's arithmetic finite. Informational
fields (user, metadata, store, service_tier) are accepted and ignored. Fields that would change
the answer but are not supported are declared so that `reject_unsupported` can name them in a 400
instead of silently ignoring them. Unknown fields are ignored, as OpenAI does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from llmserve.errors import InvalidRequestError
from llmserve.serving.prediction import Prediction
from llmserve.serving.schemas_cache import PromptCacheFields
from llmserve.serving.schemas_tools import (
    MessageToolCall,
    ResponseFormat,
    StructuredOutputs,
    Tool,
    ToolChoice,
)
from llmserve.serving.strict import StrictModel

__all__ = ["StrictModel"]  # re-exported: every request schema module builds on it

MAX_INT32 = 2**31 - 1  # token ids and top_k: beyond it no vocabulary, and tensors overflow
TokenId = Annotated[int, Field(ge=0, le=MAX_INT32)]


class StreamOptions(StrictModel):
    """`stream_options`: only include_usage changes anything."""

    include_usage: bool = False


class ModelRequest(StrictModel):
    """Base of every request body that names a model (unknown fields are ignored)."""

    model: str


class SamplingFields(ModelRequest, PromptCacheFields):
    """Sampling fields shared by chat and text completions (OpenAI names, plus vLLM extras)."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # a signed 64-bit int
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Extras accepted by vLLM-compatible servers.
    top_k: int = Field(default=0, ge=-1, le=MAX_INT32)
    min_p: float = Field(default=0.0, ge=0, le=1)
    # NOTE: logits are divided or multiplied by it: a bound away from 0 keeps them finite.
    repetition_penalty: float = Field(default=1.0, ge=0.01, le=100)
    stop_token_ids: list[TokenId] = Field(default_factory=list)
    ignore_eos: bool = False
    # Informational: accepted, ignored.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # Answer-changing features not supported: declared only to be rejected by name.
    logit_bias: dict[str, float] | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    # Structured output (OpenAI's response_format; vLLM's structured_outputs extra).
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None

    def reject_unsupported(self) -> None:
        """Raise a 400 naming the first field set that this server rejects here."""
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        for name in ("functions", "logit_bias"):
            if getattr(self, name):
                raise InvalidRequestError(f"`{name}` is not supported by this server.", param=name)
        if self.function_call not in (None, "none", "auto"):
            raise InvalidRequestError(
                "`function_call` is deprecated and not supported; use `tools` and `tool_choice`.",
                param="function_call",
            )

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """`stop` as a tuple, whether sent as a string or a list."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class TextPart(StrictModel):
    """A text content part of a message."""

    type: Literal["text"]
    text: str


class Message(StrictModel):
    """One chat message; content is a string or a list of text parts."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None  # assistant messages
    tool_call_id: str | None = None  # tool messages: the call they answer

    @property
    def text(self) -> str:
        """The content as plain text (text parts are joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    prediction: Prediction | None = None  # Predicted Outputs (serving/prediction.py)


class CompletionRequest(SamplingFields):
    """POST /v1/completions."""

    prompt: str | Annotated[list[str], Field(min_length=1)]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @property
    def prompts(self) -> list[str]:
        """`prompt` as a list, whether sent as a string or a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

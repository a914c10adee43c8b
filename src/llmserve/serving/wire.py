"""The typed shapes of response bodies and stream chunks, field for field as OpenAI sends them.

Being TypedDicts, they are the JSON itself: mypy checks every field name and value type where a
body is built, and nothing is converted on the way out.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class PromptTokensDetails(TypedDict):
    cached_tokens: int  # prompt tokens read from the prefix cache instead of computed


class CompletionTokensDetails(TypedDict):
    reasoning_tokens: int
    audio_tokens: int
    accepted_prediction_tokens: int  # predicted tokens the answer kept
    rejected_prediction_tokens: int  # predicted tokens checked and thrown away (still billed)


class Usage(TypedDict):
    """`usage` of chat and text completions."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: NotRequired[CompletionTokensDetails]  # with a `prediction`


class TopLogprobBody(TypedDict):
    """One alternative at a position (chat logprobs)."""

    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobBody(TypedDict):
    """The sampled token at a position and its alternatives (chat logprobs)."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprobBody]


class ChatLogprobs(TypedDict):
    """`choices[].logprobs` of a chat completion or chunk."""

    content: list[TokenLogprobBody]
    refusal: None


class CompletionLogprobs(TypedDict):
    """`choices[].logprobs` of a text completion: parallel lists."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class FunctionCallBody(TypedDict):
    """The function a tool call calls: its name and its arguments as JSON text."""

    name: str
    arguments: str


class ToolCallBody(TypedDict):
    """One entry of `message.tool_calls`."""

    id: str
    type: Literal["function"]
    function: FunctionCallBody


class AssistantMessage(TypedDict):
    """The assistant's message in a chat completion (content is null when it only called tools)."""

    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: NotRequired[list[ToolCallBody]]


class FunctionCallDelta(TypedDict, total=False):
    """The first delta of a call names the function (arguments ""); later ones add arguments."""

    name: str
    arguments: str


class ToolCallDelta(TypedDict):
    """A streamed piece of a tool call: `id` and `type` come only in the call's first delta."""

    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: FunctionCallDelta


class ChatChoice(TypedDict):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletion(TypedDict):
    """A whole chat completion (`object: chat.completion`)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(TypedDict, total=False):
    """What a chunk adds to a choice: the role first, then content or tool-call pieces."""

    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallDelta]


class ChatChunkChoice(TypedDict):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(TypedDict):
    """One streamed chunk; `usage` is present (null until the last) with include_usage."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChatChunkChoice]
    usage: NotRequired[Usage | None]


class CompletionChoice(TypedDict):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class Completion(TypedDict):
    """A text completion, whole or as one streamed chunk (OpenAI uses one shape for both)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[CompletionChoice]
    usage: NotRequired[Usage | None]


class Embedding(TypedDict):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(TypedDict):
    """The answer of /v1/embeddings."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage

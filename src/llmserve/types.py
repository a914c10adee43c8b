"""The words every layer shares: a generate request and its outputs, logprobs, chat messages,
model info and backend load. Engine, models, auth, backends, serving and api all speak these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from llmserve.sampling import SamplingParams

FinishReason = Literal["stop", "length", "abort"]
GrammarKind = Literal["json_schema", "json_object", "regex", "choice", "lark"]
ModelKind = Literal["chat", "embedding"]


class Priority(enum.IntEnum):
    """Admission class: lower values are scheduled first."""

    INTERACTIVE = 0
    BACKGROUND = 1  # `background: true` responses
    BATCH = 2  # Batch API lines: at most `engine.batch_share` of the running sequences


@dataclass(frozen=True)
class GrammarSpec:
    """A constraint on the output text, before compilation (hashable: compiled grammars are cached).

    `source` is the JSON schema as JSON text (json_schema), the regex, the Lark grammar, or the
    JSON list of allowed strings (choice); it is "" for json_object.
    """

    kind: GrammarKind
    source: str = ""


@dataclass(frozen=True)
class GenerateRequest:
    """One generation request, already tokenized and validated."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams
    priority: Priority = Priority.INTERACTIVE
    tenant: str = ""  # the API key's id: the scheduler admits waiting requests round-robin by it
    grammar: GrammarSpec | None = None  # every choice's text must match it (constrained decoding)
    # Where its prefix-cache hash chain starts (serving/cache_namespace.py): only requests of the
    # same namespace share cached blocks. "" is one shared namespace (engine-level callers).
    cache_namespace: str = ""
    prompt_cache_key: str | None = None  # OpenAI's routing hint: same key, same replica (Ray)
    # OpenAI's Predicted Outputs: tokens the answer is expected to contain, verified as drafts
    prediction_token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TopLogprob:
    """One candidate token at a position, with its log-probability."""

    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token at a position, its log-probability and the top alternatives."""

    token_id: int
    token: str
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class GenerateOutput:
    """What one engine step produced for one sequence (choice) of a request.

    `text` and `token_ids` are deltas since the previous output of the same `index`. The last
    output of each index has `finish_reason` set; its `text` never contains a matched stop string.
    """

    request_id: str
    index: int
    text: str
    token_ids: tuple[int, ...]
    num_prompt_tokens: int
    num_output_tokens: int  # cumulative for this index
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    queue_time_s: float | None = None  # how long the request waited before it first ran
    num_cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    num_cache_write_tokens: int = 0  # prompt tokens this request newly wrote to the prefix cache
    replica: str = ""  # the engine replica that ran it (Ray runtime); "" in process
    # Prediction tokens verified so far (cumulative for this index): kept, and thrown away
    num_accepted_prediction_tokens: int = 0
    num_rejected_prediction_tokens: int = 0


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors for a batch of inputs, in input order, and the tokens they took."""

    vectors: list[list[float]]
    num_prompt_tokens: int


@dataclass(frozen=True)
class ToolCall:
    """A function call the assistant made: its id, function name and JSON arguments text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    """A message ready for a chat template: role and plain-text content.

    Assistant messages may carry the tool calls they made; `tool` messages name the call answered.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the API layer needs to know about a served model."""

    name: str
    kind: ModelKind
    max_model_len: int
    owned_by: str = "llmserve"
    created: int = 0
    source: str = ""
    # The most characters one token stands for (None: unknown); bounds the cost of huge prompts.
    max_chars_per_token: int | None = None
    # How the model writes tool calls (a name in structured/tool_formats.py).
    tool_call_format: str = "hermes"


@dataclass(frozen=True)
class BackendLoad:
    """A snapshot of work in the backend, for admission and /health."""

    num_running: int
    num_waiting: int
    waiting_by_tenant: dict[str, int] = field(default_factory=dict)
    max_running: int | None = None  # requests it runs at once, when fixed; None: unknown
    kv_cache_usage: float = 0.0  # fraction of KV-cache blocks in use (0 without a KV cache)
    num_preemptions: int = 0  # since start: sequences evicted to make room, to recompute later
    num_replicas: int | None = None  # engine replicas serving it (Ray runtime); None: in process

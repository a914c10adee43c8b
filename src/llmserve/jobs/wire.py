"""The JSON objects of the Files and Batch APIs and of stored responses, as typed dicts.

They are stored as JSON and sent as they are, so each is a `TypedDict`, not a class. What a
user wrote (a batch line's body) is only known to be JSON: `RequestBody`.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from pydantic import JsonValue

from llmserve.serving.response_items import Item
from llmserve.serving.response_objects import ResponseObject
from llmserve.serving.wire import ChatCompletion, Completion, EmbeddingList
from llmserve.statuses import BatchStatus, FileStatus

RequestBody = dict[str, JsonValue]  # a batch line's `body`, as the user wrote it
ErrorBody = dict[str, dict[str, str | None]]  # {"error": {message, type, param, code}}
EndpointBody = ChatCompletion | Completion | EmbeddingList | ResponseObject | ErrorBody


class BatchError(TypedDict):
    """One entry of a Batch's `errors.data` (a problem of the input file)."""

    code: str
    line: int | None
    message: str
    param: str | None


class BatchErrors(TypedDict):
    object: Literal["list"]
    data: list[BatchError]


class RequestCounts(TypedDict):
    total: int
    completed: int
    failed: int


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class BatchUsage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class BatchUpdate(TypedDict, total=False):
    """The Batch fields the runner changes after creation (with its status)."""

    errors: BatchErrors | None
    output_file_id: str | None
    error_file_id: str | None
    expires_at: int
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None


class BatchObject(TypedDict):
    """OpenAI's Batch object."""

    id: str
    object: Literal["batch"]
    endpoint: str
    model: str | None
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    expires_at: int
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    usage: BatchUsage
    metadata: dict[str, str] | None


class LineResponse(TypedDict):
    status_code: int
    request_id: str
    body: EndpointBody
    headers: NotRequired[dict[str, str]]  # a canary's variant, named as HTTP's header names it


class LineError(TypedDict):
    code: str
    message: str


class ResultLine(TypedDict):
    """One line of a batch's output or error file."""

    id: str
    custom_id: str
    response: LineResponse | None
    error: LineError | None


class FileObject(TypedDict):
    """OpenAI's File object."""

    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: FileStatus
    status_details: str | None
    expires_at: int | None


class StoredRequest(TypedDict, total=False):
    """What a stored response keeps of the request that made it."""

    body: RequestBody  # a background response's request, run later by the runner
    items: list[Item]  # its conversation: every input and output item, oldest first
    input_items: list[Item]  # its own `input`, as items
    conversation: list[list[str]]  # stored by an earlier llmserve: [role, text] pairs
    variant: str  # a canary's variant, chosen when the request came in: the runner uses it


class ConversationObject(TypedDict):
    """OpenAI's Conversation object."""

    id: str
    object: Literal["conversation"]
    created_at: int
    metadata: dict[str, str]

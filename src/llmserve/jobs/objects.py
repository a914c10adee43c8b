"""OpenAI's Batch object and its result lines (the output and error file format)."""

from __future__ import annotations

import time

from llmserve.ids import batch_request_id, line_request_id
from llmserve.jobs.store import BatchRecord
from llmserve.jobs.wire import BatchObject, EndpointBody, LineResponse, ResultLine

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
COMPLETION_WINDOW_S = {"24h": 24 * 3600}


def new_batch_doc(
    batch_id: str,
    endpoint: str,
    input_file_id: str,
    completion_window: str,
    metadata: dict[str, str] | None,
    model: str | None,
    num_lines: int,
) -> BatchObject:
    """The Batch object as created: `validating`, nothing run yet."""
    now = int(time.time())
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "model": model,
        "errors": None,
        "input_file_id": input_file_id,
        "completion_window": completion_window,
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "expires_at": now + COMPLETION_WINDOW_S[completion_window],
        "in_progress_at": None,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": num_lines, "completed": 0, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": metadata,
    }


def batch_object(record: BatchRecord) -> BatchObject:
    """The Batch object a client sees."""
    return {**record.doc, "id": record.id, "status": record.status}


def response_line(
    batch_id: str,
    line_no: int,
    custom_id: str,
    status_code: int,
    body: EndpointBody,
    headers: dict[str, str] | None = None,
) -> ResultLine:
    """A line that ran: the endpoint's status and body (a 4xx goes to the error file), and the
    headers HTTP would have added (a canary's variant)."""
    request_id = line_request_id(batch_id, line_no)
    response: LineResponse = {"status_code": status_code, "request_id": request_id, "body": body}
    if headers:
        response["headers"] = headers
    return {
        "id": batch_request_id(request_id),
        "custom_id": custom_id,
        "response": response,
        "error": None,
    }


def error_line(batch_id: str, line_no: int, custom_id: str, code: str, message: str) -> ResultLine:
    """A line that did not run (the batch expired or was cancelled first)."""
    return {
        "id": batch_request_id(line_request_id(batch_id, line_no)),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }

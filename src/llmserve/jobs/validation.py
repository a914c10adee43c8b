"""A batch input file checked line by line while streaming over it (never whole in memory).

Each problem becomes an entry of the Batch's `errors.data`: {code, line, message, param}, with
`line` counted from 1. A file with problems fails the batch before any line runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from llmserve.jobs.wire import BatchError, RequestBody

MAX_ERRORS = 100  # entries of errors.data; the first ones say enough
TOO_LONG = b""  # a line over the body limit (see input_lines)
SKIP_CHUNK = 1 << 20
MAX_LINE_TOKENS = 2**31 - 1  # a line asking for more is estimated at this (and gets its 400)
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass
class Validation:
    """What streaming over an input file found."""

    num_lines: int = 0
    model: str | None = None
    estimated_tokens: int = 0
    errors: list[BatchError] = field(default_factory=list)

    def add_error(self, code: str, line: int | None, message: str, param: str | None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "line": line, "message": message, "param": param})


@dataclass(frozen=True)
class BatchLine:
    """One parsed input line."""

    line_no: int
    custom_id: str
    body: RequestBody


def input_lines(path: Path, max_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers, read one at a time; a line longer than
    `max_bytes` is skipped over unread (a chunk at a time) and yielded as `TOO_LONG`."""
    limit = -1 if max_bytes is None else max_bytes + 1
    with path.open("rb") as lines:
        line_no = 0
        while raw := lines.readline(limit):
            line_no += 1
            if not raw.endswith(b"\n") and len(raw) == limit:
                _skip_line(lines)
                yield line_no, TOO_LONG
            elif raw.strip():
                yield line_no, raw


def _skip_line(lines: BinaryIO) -> None:
    """Read on to the end of the current line, keeping at most a chunk of it."""
    while chunk := lines.readline(SKIP_CHUNK):
        if chunk.endswith(b"\n"):
            return


def parse_line(raw: bytes) -> RequestBody | None:
    """The line's JSON object, or None when it is not one."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def validate_file(
    path: Path,
    endpoint: str,
    max_lines: int,
    default_max_tokens: int,
    has_model: Callable[[str], bool],
    max_line_bytes: int | None = None,
) -> Validation:
    """Check every line: JSON, fields, url, one model that exists, unique custom_id, no stream,
    at most `max_line_bytes` (the request body limit)."""
    result = Validation()
    custom_ids: set[str] = set()
    for line_no, raw in input_lines(path, max_line_bytes):
        result.num_lines += 1
        if result.num_lines > max_lines:
            result.add_error(
                "too_many_tasks", line_no,
                f"A batch may have at most {max_lines} requests (jobs.max_lines); "
                "split the file.", None,
            )  # fmt: skip
            break
        if raw == TOO_LONG:
            result.add_error("line_too_large", line_no,
                             f"This line is larger than the server's request body limit of "
                             f"{(max_line_bytes or 0) / 2**20:.3g} MB (limits.max_request_body_mb)"
                             "; each line is one request.", None)  # fmt: skip
            continue
        line = parse_line(raw)
        if line is None:
            result.add_error("invalid_json_line", line_no, "This line is not a JSON object.", None)
            continue
        check_line(line, line_no, endpoint, result, custom_ids, has_model)
        result.estimated_tokens += estimate_tokens(line, raw, default_max_tokens)
    if result.num_lines == 0:
        result.add_error("empty_file", None, "The input file has no requests.", None)
    return result


def check_line(
    line: RequestBody,
    line_no: int,
    endpoint: str,
    result: Validation,
    custom_ids: set[str],
    has_model: Callable[[str], bool],
) -> None:
    """Add the problems of one parsed line to `result`."""
    custom_id, body = line.get("custom_id"), line.get("body")
    if not isinstance(custom_id, str) or not custom_id:
        result.add_error("invalid_request", line_no, "Each line needs a `custom_id` string.",
                         "custom_id")  # fmt: skip
    elif custom_id in custom_ids:
        result.add_error("duplicate_custom_id", line_no,
                         f"The custom_id `{custom_id}` appears more than once; each line needs "
                         "a unique custom_id.", "custom_id")  # fmt: skip
    else:
        custom_ids.add(custom_id)
    if line.get("method", "POST") != "POST":
        result.add_error("invalid_request", line_no, "`method` must be POST.", "method")
    if line.get("url") != endpoint:
        result.add_error("url_mismatch", line_no,
                         f"The url `{line.get('url')}` does not match the batch's endpoint "
                         f"`{endpoint}`.", "url")  # fmt: skip
    if not isinstance(body, dict):
        result.add_error("invalid_request", line_no, "Each line needs a `body` object.", "body")
        return
    check_body(body, line_no, result, has_model)


def check_body(
    body: RequestBody, line_no: int, result: Validation, has_model: Callable[[str], bool]
) -> None:
    """The body's model (one per batch, served here) and no streaming."""
    model = body.get("model")
    if body.get("stream") is True:
        result.add_error("invalid_request", line_no,
                         "Batch requests cannot stream; remove `stream` from the body.",
                         "body.stream")  # fmt: skip
    if not isinstance(model, str):
        result.add_error("invalid_request", line_no, "The body needs a `model`.", "body.model")
    elif result.model is not None and model != result.model:
        result.add_error("model_mismatch", line_no,
                         f"The model `{model}` differs from `{result.model}` of the first line; "
                         "a batch uses one model.", "body.model")  # fmt: skip
    elif not has_model(model):
        result.add_error("model_not_found", line_no,
                         f"The model `{model}` does not exist or you do not have access to it.",
                         "body.model")  # fmt: skip
    else:
        result.model = model


def estimate_tokens(line: RequestBody, raw: bytes, default_max_tokens: int) -> int:
    """What the line may cost: its bytes as prompt tokens (an upper bound) plus its output.

    The output is clamped: a missing, negative or zero limit counts as the default (never
    lowering the batch's estimate), a huge one as `MAX_LINE_TOKENS` (so a file's sum fits
    SQLite's integers); the endpoint answers such a line with its 400 when it runs.
    """
    body = line.get("body")
    limits = [body.get(name) for name in MAX_TOKEN_FIELDS] if isinstance(body, dict) else []
    asked = next((v for v in limits if isinstance(v, int) and not isinstance(v, bool)), None)
    max_tokens = default_max_tokens if asked is None or asked < 1 else min(asked, MAX_LINE_TOKENS)
    return len(raw) // 4 + max_tokens

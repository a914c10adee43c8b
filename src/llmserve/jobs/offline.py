"""A batch file run offline through a local backend (`llmserve batch run`), resumable.

Each result line is appended to the output file and synced as it finishes; a second run with the
same output file skips the custom_ids already there, so an interrupted run picks up where it
stopped. One output file holds every line, as `vllm run-batch` writes it (an error has its
status and error body in `response`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from llmserve.backends.base import Backend
from llmserve.errors import InvalidRequestError
from llmserve.ids import line_request_id
from llmserve.jobs.lines import run_line
from llmserve.jobs.objects import response_line
from llmserve.jobs.validation import BatchLine, input_lines, parse_line
from llmserve.serving.context import ServingContext

OFFLINE_BATCH_ID = "batch_offline"


def done_custom_ids(output: Path) -> set[str]:
    """The custom_ids an earlier run already wrote (a torn last line is ignored)."""
    if not output.exists():
        return set()
    done = set()
    for _, raw in input_lines(output):
        parsed = parse_line(raw)
        custom_id = None if parsed is None else parsed.get("custom_id")
        if isinstance(custom_id, str):
            done.add(custom_id)
    return done


def pending_lines(source: Path, done: set[str]) -> list[BatchLine]:
    """The input lines still to run; a line that is not a request object is a 400 naming it."""
    lines = []
    for line_no, raw in input_lines(source):
        parsed = parse_line(raw)
        body = None if parsed is None else parsed.get("body")
        if parsed is None or not isinstance(body, dict):
            raise InvalidRequestError(f"line {line_no} of {source} is not a batch request")
        custom_id = str(parsed.get("custom_id", f"line-{line_no}"))
        if custom_id not in done:
            url = parsed.get("url", "/v1/chat/completions")
            lines.append(BatchLine(line_no, custom_id, {**body, "url": url}))
    return lines


async def run_offline(
    source: Path,
    output: Path,
    backend: Backend,
    *,
    max_concurrency: int,
    on_done: Callable[[], None],
) -> int:
    """Run every pending line of `source`, appending results to `output`; returns how many ran."""
    lines = pending_lines(source, done_custom_ids(output))
    limit = asyncio.Semaphore(max_concurrency)
    with output.open("ab") as out:
        _end_torn_line(output, out)
        await asyncio.gather(*(_run(line, backend, out, limit, on_done) for line in lines))
    return len(lines)


async def _run(
    line: BatchLine, backend: Backend, out: BinaryIO, limit: asyncio.Semaphore,
    on_done: Callable[[], None],
) -> None:  # fmt: skip
    body = dict(line.body)
    endpoint = str(body.pop("url"))
    async with limit:
        request_id = line_request_id(OFFLINE_BATCH_ID, line.line_no)
        context = ServingContext(request_id, "", backend.info.name, backend)
        outcome = await run_line(context, endpoint, {**body, "model": backend.info.name})
    result = response_line(
        OFFLINE_BATCH_ID, line.line_no, line.custom_id, outcome.status_code, outcome.body
    )
    out.write(json.dumps(result).encode() + b"\n")
    out.flush()
    os.fsync(out.fileno())
    on_done()


def _end_torn_line(output: Path, out: BinaryIO) -> None:
    """A run killed mid-write may leave a last line without its newline: end it."""
    if output.stat().st_size and output.read_bytes()[-1:] != b"\n":
        out.write(b"\n")

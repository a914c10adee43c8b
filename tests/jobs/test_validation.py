"""Every validation error fails the batch with OpenAI's errors.data entry and its line number."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from jobs_helpers import (
    FAST,
    MAX_LINES,
    JobsServer,
    SdkFactory,
    as_upload,
    chat_line,
    jsonl,
    wait_until,
)


def failed_batch(sdk: openai.OpenAI, lines: list[Any]) -> dict[str, Any]:
    uploaded = sdk.files.create(file=as_upload(jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    final = wait_until(
        lambda: (b := sdk.batches.retrieve(batch.id)).status != "validating" and b,
        "validation to end",
    )
    assert final.status == "failed"
    assert final.failed_at is not None
    assert final.errors is not None
    return final.errors.model_dump()


GOOD = chat_line("ok")
WRONG_URL = {**chat_line("u"), "url": "/v1/completions"}
OTHER_MODEL = chat_line("m", model="slow-chat")
UNKNOWN_MODEL = chat_line("n", model="no-such-model")
STREAMING = chat_line("s", stream=True)


@pytest.mark.parametrize(
    ("lines", "code", "line", "param"),
    [
        ([GOOD, "{not json"], "invalid_json_line", 2, None),
        ([GOOD, chat_line("x"), chat_line("ok")], "duplicate_custom_id", 3, "custom_id"),
        ([GOOD, WRONG_URL], "url_mismatch", 2, "url"),
        ([GOOD, GOOD | {"custom_id": "b"}, OTHER_MODEL], "model_mismatch", 3, "body.model"),
        ([UNKNOWN_MODEL], "model_not_found", 1, "body.model"),
        ([GOOD, STREAMING], "invalid_request", 2, "body.stream"),
    ],
)
def test_bad_line_fails_the_batch_with_its_line_number(
    jobs_server: JobsServer,
    client: SdkFactory,
    lines: list[Any],
    code: str,
    line: int,
    param: str | None,
) -> None:
    errors = failed_batch(client(jobs_server), lines)
    assert errors["object"] == "list"
    (entry,) = errors["data"]
    assert (entry["code"], entry["line"], entry["param"]) == (code, line, param)
    assert entry["message"]


def test_empty_file_fails_with_empty_file(jobs_server: JobsServer, client: SdkFactory) -> None:
    (entry,) = failed_batch(client(jobs_server), ["", "  "])["data"]
    assert (entry["code"], entry["line"]) == ("empty_file", None)


def test_too_many_lines_fail_with_too_many_tasks(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    lines = [chat_line(f"t-{i}", model=FAST) for i in range(MAX_LINES + 1)]
    (entry,) = failed_batch(client(jobs_server), lines)["data"]
    assert (entry["code"], entry["line"]) == ("too_many_tasks", MAX_LINES + 1)
    assert f"at most {MAX_LINES} requests" in entry["message"]

"""The Batch API through the real openai SDK: upload → create → poll → download, list, cancel."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from jobs_helpers import (
    FAST,
    REPLY,
    SLOW,
    JobsServer,
    SdkFactory,
    as_upload,
    chat_line,
    jsonl,
    parse_jsonl,
    wait_until,
)
from openai.types import Batch
from prometheus_client.parser import text_string_to_metric_families

from llmserve.config import BUILTIN_EMBEDDING_MODEL

TERMINAL = ("completed", "failed", "expired", "cancelled")


def run_batch(sdk: openai.OpenAI, lines: list[Any], endpoint: str) -> Batch:
    """Upload, create, and poll until the batch ends."""
    uploaded = sdk.files.create(file=as_upload(jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        metadata={"job": "test"},
    )
    assert batch.status == "validating"
    assert batch.metadata == {"job": "test"}
    return wait_until(lambda: ended(sdk, batch.id), f"batch {batch.id} to end")


def ended(sdk: openai.OpenAI, batch_id: str) -> Batch | None:
    batch = sdk.batches.retrieve(batch_id)
    return batch if batch.status in TERMINAL else None


def lines_of(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return [] if file_id is None else parse_jsonl(sdk.files.content(file_id).text)


def completion_line(custom_id: str) -> dict[str, Any]:
    body = {"model": FAST, "prompt": f"say {custom_id}", "max_tokens": 5}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}


def embedding_line(custom_id: str) -> dict[str, Any]:
    body = {"model": BUILTIN_EMBEDDING_MODEL, "input": f"text {custom_id}"}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def test_chat_batch_completes_with_one_output_line_per_request(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    batch = run_batch(sdk, [chat_line(f"c-{i}") for i in range(5)], "/v1/chat/completions")
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (5, 5)
    assert batch.request_counts.failed == 0
    assert batch.error_file_id is None
    outputs = lines_of(sdk, batch.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == [f"c-{i}" for i in range(5)]
    for line in outputs:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["response"]["body"]["choices"][0]["message"]["content"] == REPLY
        assert line["response"]["request_id"].startswith("req_")
        assert line["custom_id"] not in line["response"]["request_id"]
    usage = batch.usage
    assert usage is not None
    assert usage.input_tokens == sum(
        o["response"]["body"]["usage"]["prompt_tokens"] for o in outputs
    )
    assert usage.output_tokens == sum(
        o["response"]["body"]["usage"]["completion_tokens"] for o in outputs
    )


def test_completions_batch_through_the_sdk(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server)
    batch = run_batch(sdk, [completion_line(f"p-{i}") for i in range(3)], "/v1/completions")
    assert batch.status == "completed"
    outputs = lines_of(sdk, batch.output_file_id)
    assert {o["custom_id"] for o in outputs} == {"p-0", "p-1", "p-2"}
    assert all(o["response"]["body"]["object"] == "text_completion" for o in outputs)
    assert all(o["response"]["body"]["choices"][0]["text"] == REPLY[:5] for o in outputs)


def test_embeddings_batch_through_the_sdk(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server)
    batch = run_batch(sdk, [embedding_line(f"e-{i}") for i in range(3)], "/v1/embeddings")
    assert batch.status == "completed"
    outputs = lines_of(sdk, batch.output_file_id)
    assert {o["custom_id"] for o in outputs} == {"e-0", "e-1", "e-2"}
    for output in outputs:
        vector = output["response"]["body"]["data"][0]["embedding"]
        assert len(vector) == 384


def test_one_bad_line_goes_to_the_error_file_and_the_rest_run(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    lines = [chat_line(f"g-{i}", max_tokens=3) for i in range(100)]
    lines[41] = chat_line("g-41", temperature=5)  # the endpoint answers 400
    batch = run_batch(sdk, lines, "/v1/chat/completions")
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (99, 1)
    assert len(lines_of(sdk, batch.output_file_id)) == 99
    (error,) = lines_of(sdk, batch.error_file_id)
    assert error["custom_id"] == "g-41"
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "temperature"


def test_batches_list_pages_newest_first(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server, jobs_server.carol)
    uploaded = sdk.files.create(file=as_upload(jsonl([chat_line("x")])), purpose="batch")
    made = [
        sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(3)
    ]
    first = sdk.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2]
    assert first.has_more is True
    assert [b.id for b in sdk.batches.list(limit=2)] == made[::-1]  # the SDK follows `after`


def test_cancel_keeps_partial_output_and_reports_the_rest(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    lines = [chat_line(f"s-{i}", model=SLOW) for i in range(20)]
    uploaded = sdk.files.create(file=as_upload(jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_until(
        lambda: (sdk.batches.retrieve(batch.id).request_counts or batch.request_counts).completed,
        "a first line to finish",
    )
    assert sdk.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    final = wait_until(lambda: ended(sdk, batch.id), "the cancel to finish")
    assert final.status == "cancelled"
    outputs = lines_of(sdk, final.output_file_id)
    errors = lines_of(sdk, final.error_file_id)
    assert 1 <= len(outputs) < 20
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    custom_ids = [line["custom_id"] for line in outputs + errors]
    assert sorted(custom_ids) == sorted(f"s-{i}" for i in range(20))


def test_completion_window_other_than_24h_is_400(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    uploaded = sdk.files.create(file=as_upload(jsonl([chat_line("w")])), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="1h",  # type: ignore[arg-type]
        )
    assert caught.value.body["param"] == "completion_window"  # type: ignore[index]


def test_enqueued_token_limit_is_429_at_create(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server, jobs_server.carol)
    huge = chat_line("big", max_tokens=2_000_000)
    uploaded = sdk.files.create(file=as_upload(jsonl([huge])), purpose="batch")
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert "jobs.max_enqueued_tokens_per_key" in caught.value.message


def test_batch_lines_count_in_the_keys_usage(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server, jobs_server.dave)
    batch = run_batch(sdk, [chat_line(f"u-{i}") for i in range(4)], "/v1/chat/completions")
    assert batch.usage is not None
    answer = httpx.get(
        f"{jobs_server.base_url.removesuffix('/v1')}/admin/usage",
        params={"key": "dave"},
        headers={"authorization": f"Bearer {jobs_server.admin}"},
    )
    [row] = answer.json()["data"]
    assert (row["model"], row["requests"]) == (FAST, 4)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        batch.usage.input_tokens,
        batch.usage.output_tokens,
    )


def test_responses_batch_through_the_sdk(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server)
    lines = [
        {"custom_id": f"r-{i}", "method": "POST", "url": "/v1/responses",
         "body": {"model": FAST, "input": f"hi {i}"}}
        for i in range(2)
    ]  # fmt: skip
    batch = run_batch(sdk, lines, "/v1/responses")
    assert batch.status == "completed"
    outputs = lines_of(sdk, batch.output_file_id)
    assert {o["response"]["body"]["output"][0]["content"][0]["text"] for o in outputs} == {REPLY}


def job_families(jobs_server: JobsServer) -> dict[tuple[str, str], float]:
    """(sample name, status) → value of the job families in a /metrics scrape."""
    root = jobs_server.base_url.removesuffix("/v1")
    text = httpx.get(f"{root}/metrics", timeout=30).text
    return {
        (sample.name, sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name in ("llmserve:batches", "llmserve:batch_lines")
        for sample in family.samples
        if sample.name in ("llmserve:batches", "llmserve:batch_lines_total")
    }


def test_metrics_count_batches_by_status_and_lines_done(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    before = job_families(jobs_server)
    lines = [chat_line(f"m-{i}", max_tokens=2) for i in range(20)]
    lines[7] = chat_line("m-7", temperature=5)  # the endpoint answers 400: an error line
    assert run_batch(client(jobs_server), lines, "/v1/chat/completions").status == "completed"
    after = job_families(jobs_server)
    completed_lines = ("llmserve:batch_lines_total", "completed")
    failed_lines = ("llmserve:batch_lines_total", "failed")
    assert after[completed_lines] - before[completed_lines] == 19
    assert after[failed_lines] - before[failed_lines] == 1
    completed = ("llmserve:batches", "completed")
    assert after[completed] - before[completed] == 1

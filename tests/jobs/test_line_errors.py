"""A batch line the endpoint refuses carries the endpoint's own answer: the same status and the
same error body, word for word, as the HTTP request with that body gets."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from jobs_helpers import FAST, JobsServer, SdkFactory, as_upload, jsonl, parse_jsonl, wait_until

from llmserve.config import BUILTIN_EMBEDDING_MODEL

ENDED = ("completed", "failed", "expired", "cancelled")
HELLO = [{"role": "user", "content": "hello"}]

BAD_BODIES: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {"model": FAST},  # no messages
        {"model": FAST, "messages": HELLO, "temperature": 5},
        {"model": FAST, "messages": HELLO, "temperature": "warm"},
        {"model": FAST, "messages": [{"role": "wizard", "content": "hi"}]},
        {"model": FAST, "messages": "hello"},
        {"model": FAST, "messages": HELLO, "n": 0},
        {"model": FAST, "messages": HELLO, "max_tokens": 100_000},  # past the context
        {"model": FAST, "messages": HELLO, "top_p": 2},
    ],
    "/v1/completions": [
        {"model": FAST},  # no prompt
        {"model": FAST, "prompt": []},
        {"model": FAST, "prompt": "hi", "logprobs": 99},
    ],
    "/v1/embeddings": [
        {"model": BUILTIN_EMBEDDING_MODEL},  # no input
        {"model": BUILTIN_EMBEDDING_MODEL, "input": "x", "encoding_format": "hex"},
    ],
    "/v1/responses": [
        {"model": FAST},  # no input
        {"model": FAST, "input": "hi", "max_output_tokens": "many"},
        {"model": FAST, "input": [{"role": "user", "content": 7}]},
    ],
}


def run_lines(sdk: openai.OpenAI, endpoint: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Run `bodies` as one batch; its error lines by custom_id."""
    lines = [
        {"custom_id": f"bad-{i}", "method": "POST", "url": endpoint, "body": body}
        for i, body in enumerate(bodies)
    ]
    uploaded = sdk.files.create(file=as_upload(jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    )
    ended = wait_until(
        lambda: (found := sdk.batches.retrieve(batch.id)).status in ENDED and found,
        f"batch {batch.id} to end",
    )
    assert ended.status == "completed", ended.errors
    assert ended.error_file_id is not None
    errors = parse_jsonl(sdk.files.content(ended.error_file_id).text)
    return {line["custom_id"]: line for line in errors}


@pytest.mark.parametrize("endpoint", sorted(BAD_BODIES))
def test_batch_line_error_is_the_endpoints_answer(
    jobs_server: JobsServer, client: SdkFactory, endpoint: str
) -> None:
    bodies = BAD_BODIES[endpoint]
    errors = run_lines(client(jobs_server), endpoint, bodies)
    assert sorted(errors) == sorted(f"bad-{i}" for i in range(len(bodies)))
    root = jobs_server.base_url.removesuffix("/v1")
    headers = {"authorization": f"Bearer {jobs_server.alice}"}
    with httpx.Client(base_url=root, headers=headers, timeout=60) as http:
        for i, body in enumerate(bodies):
            answer = http.post(endpoint, json=body)
            response = errors[f"bad-{i}"]["response"]
            assert 400 <= answer.status_code < 500, (body, answer.text)
            assert (response["status_code"], response["body"]) == (
                answer.status_code,
                answer.json(),
            ), body

"""The Files API through the real openai SDK: upload, list pages, retrieve, content, delete."""

from __future__ import annotations

import httpx
import openai
import pytest
from jobs_helpers import JobsServer, SdkFactory, as_upload, chat_line, jsonl


def test_upload_retrieve_content_and_delete(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server)
    content = jsonl([chat_line("a"), chat_line("b")])
    made = sdk.files.create(file=as_upload(content, "mine.jsonl"), purpose="batch")
    assert made.id.startswith("file-")
    assert (made.object, made.purpose, made.filename, made.bytes) == (
        "file", "batch", "mine.jsonl", len(content),
    )  # fmt: skip
    assert sdk.files.retrieve(made.id).id == made.id
    assert sdk.files.content(made.id).content == content
    deleted = sdk.files.delete(made.id)
    assert (deleted.id, deleted.deleted) == (made.id, True)
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(made.id)


def test_files_list_pages_with_after_and_limit(jobs_server: JobsServer, client: SdkFactory) -> None:
    sdk = client(jobs_server, jobs_server.bob)
    made = [sdk.files.create(file=as_upload(b"{}\n"), purpose="batch").id for _ in range(3)]
    newest_first = made[::-1]
    page = httpx.get(
        f"{jobs_server.base_url}/files",
        params={"limit": 2},
        headers={"authorization": f"Bearer {jobs_server.bob}"},
    ).json()
    mine = [f["id"] for f in page["data"]]
    assert mine == newest_first[:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (mine[0], mine[1], True)
    listed = [f.id for f in sdk.files.list(limit=2)]  # the SDK follows `after`
    assert listed[:3] == newest_first


def test_upload_over_the_limit_is_400_naming_it(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    sdk = client(jobs_server)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=as_upload(b"x" * 60_000), purpose="batch")
    assert "limit of 0.05 MB (jobs.max_file_mb)" in caught.value.message


def test_upload_without_purpose_is_400(jobs_server: JobsServer) -> None:
    answer = httpx.post(
        f"{jobs_server.base_url}/files",
        files={"file": ("a.jsonl", b"{}\n")},
        headers={"authorization": f"Bearer {jobs_server.alice}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "purpose"

"""Files, batches and responses are visible only to the key that made them; the admin sees all."""

from __future__ import annotations

import openai
import pytest
from jobs_helpers import FAST, JobsServer, SdkFactory, as_upload, chat_line, jsonl


def test_another_key_gets_404_for_files_batches_and_responses(
    jobs_server: JobsServer, client: SdkFactory
) -> None:
    alice, bob = client(jobs_server, jobs_server.alice), client(jobs_server, jobs_server.bob)
    uploaded = alice.files.create(file=as_upload(jsonl([chat_line("v")])), purpose="batch")
    batch = alice.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    response = alice.responses.create(model=FAST, input="hi")
    for read in (
        lambda: bob.files.retrieve(uploaded.id),
        lambda: bob.files.content(uploaded.id),
        lambda: bob.files.delete(uploaded.id),
        lambda: bob.batches.retrieve(batch.id),
        lambda: bob.batches.cancel(batch.id),
        lambda: bob.responses.retrieve(response.id),
        lambda: bob.responses.delete(response.id),
    ):
        with pytest.raises(openai.NotFoundError):
            read()
    with pytest.raises(openai.NotFoundError):  # bob cannot run a batch over alice's file
        bob.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert uploaded.id not in [f.id for f in bob.files.list()]
    assert batch.id not in [b.id for b in bob.batches.list()]


def test_admin_key_sees_every_keys_jobs(jobs_server: JobsServer, client: SdkFactory) -> None:
    alice = client(jobs_server, jobs_server.alice)
    admin = client(jobs_server, jobs_server.admin)
    uploaded = alice.files.create(file=as_upload(jsonl([chat_line("v")])), purpose="batch")
    response = alice.responses.create(model=FAST, input="hi")
    assert admin.files.retrieve(uploaded.id).id == uploaded.id
    assert uploaded.id in [f.id for f in admin.files.list()]
    assert admin.responses.retrieve(response.id).id == response.id

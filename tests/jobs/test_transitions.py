"""Batch statuses change only along `jobs/transitions.py`: the store refuses any other change,
and cancelling a batch that has ended is a 400 that names its status."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from jobs_helpers import FAST, chat_line, jsonl
from open_gatekeeper import OpenGatekeeper

from llmserve.backends.fake import FakeBackend
from llmserve.config import JobsConfig
from llmserve.errors import InvalidRequestError
from llmserve.ids import line_request_id, request_id_of_response, response_id_of
from llmserve.jobs.batches import BatchSpec, cancel_batch, create_batch
from llmserve.jobs.files import save_upload
from llmserve.jobs.runner import BatchRunner
from llmserve.jobs.service import Jobs
from llmserve.jobs.sqlite_store import SqliteJobStore
from llmserve.jobs.store import BatchRecord
from llmserve.jobs.transitions import BATCH_TRANSITIONS, StatusTransitionError
from llmserve.statuses import BATCH_STATUSES, ENDED_BATCH_STATUSES


def new_batch(tmp_path: Path) -> tuple[Jobs, BatchRecord]:
    store = SqliteJobStore(tmp_path / "jobs.db")
    jobs = Jobs(store, tmp_path, JobsConfig())
    content = jsonl([chat_line("t-0", model=FAST)])
    upload = save_upload(tmp_path, "k", "batch", "in.jsonl", io.BytesIO(content), 10**6)
    store.add_file(upload)
    spec = BatchSpec(upload.id, "/v1/chat/completions", "24h")
    return jobs, create_batch(jobs, "k", spec, lambda _: True)


def test_every_batch_status_has_its_transitions() -> None:
    assert set(BATCH_TRANSITIONS) == set(BATCH_STATUSES)
    assert {s for s in BATCH_STATUSES if not BATCH_TRANSITIONS[s]} == set(ENDED_BATCH_STATUSES)


def test_store_refuses_a_status_change_no_batch_makes(tmp_path: Path) -> None:
    jobs, batch = new_batch(tmp_path)
    with pytest.raises(StatusTransitionError, match="from 'validating' to 'completed'"):
        jobs.store.update_batch(batch.id, "completed", {"completed_at": 1})
    found = jobs.store.get_batch(None, batch.id)
    assert found is not None
    assert (found.status, found.doc["status"], found.doc["completed_at"]) == (
        "validating",
        "validating",
        None,
    )


def test_batch_goes_through_its_statuses_to_completed(tmp_path: Path) -> None:
    jobs, batch = new_batch(tmp_path)
    for status in ("in_progress", "finalizing", "completed"):
        record = jobs.store.update_batch(batch.id, status, {})
        assert (record.status, record.doc["status"]) == (status, status)


def test_cancelling_an_ended_batch_is_400_naming_its_status(tmp_path: Path) -> None:
    jobs, batch = new_batch(tmp_path)
    jobs.store.update_batch(batch.id, "failed", {"failed_at": 1})
    with pytest.raises(InvalidRequestError, match="Cannot cancel a batch with status 'failed'"):
        cancel_batch(jobs, "k", batch.id)


async def test_batch_cancelled_as_the_runner_starts_it_ends_cancelled(tmp_path: Path) -> None:
    jobs, batch = new_batch(tmp_path)
    runner = BatchRunner(jobs, {FAST: FakeBackend(FAST)}, OpenGatekeeper(), "test-runner")
    claimed = jobs.store.claim_batch("test-runner", 5.0)
    assert claimed is not None
    cancel_batch(jobs, "k", batch.id)  # after the claim, before the runner starts it
    with pytest.raises(StatusTransitionError):
        await runner.run_batch(claimed)  # run_forever logs this and claims the batch again
    again = jobs.store.claim_batch("test-runner", 5.0)
    assert again is not None
    assert again.status == "cancelling"
    await runner.run_batch(again)
    ended = jobs.store.get_batch(None, batch.id)
    assert ended is not None
    assert (ended.status, ended.doc["in_progress_at"]) == ("cancelled", None)
    assert ended.doc["cancelled_at"] is not None


def test_ids_derived_from_a_request_id_keep_its_suffix() -> None:
    assert response_id_of("req_abc") == "resp_abc"
    assert request_id_of_response(response_id_of("req_abc")) == "req_abc"
    assert line_request_id("batch_abc", 7) == "req_abc_7"

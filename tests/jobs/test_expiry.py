"""A batch past its completion window ends `expired`: done lines kept, the rest reported."""

from __future__ import annotations

import io
import json
from pathlib import Path

from jobs_helpers import FAST, chat_line, jsonl
from open_gatekeeper import OpenGatekeeper

from llmserve.backends.fake import FakeBackend
from llmserve.config import JobsConfig
from llmserve.jobs.batches import BatchSpec, create_batch
from llmserve.jobs.files import save_upload
from llmserve.jobs.runner import BatchRunner
from llmserve.jobs.service import Jobs
from llmserve.jobs.sqlite_store import SqliteJobStore
from llmserve.jobs.store import LineResult


async def test_expired_batch_reports_every_line_not_run(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    jobs = Jobs(store, tmp_path, JobsConfig())
    content = jsonl([chat_line(f"x-{i}") for i in range(3)])
    upload = save_upload(tmp_path, "k", "batch", "in.jsonl", io.BytesIO(content), 10**6)
    store.add_file(upload)
    batch = create_batch(jobs, "k", BatchSpec(upload.id, "/v1/chat/completions", "24h"), bool)
    store.update_batch(batch.id, "in_progress", {"expires_at": 0})
    done = LineResult(2, "x-1", False, {"custom_id": "x-1", "response": {"status_code": 200}})
    store.record_line(batch.id, done)
    runner = BatchRunner(jobs, {FAST: FakeBackend(FAST)}, OpenGatekeeper(), "test-runner")
    claimed = store.claim_batch("test-runner", 5.0)
    assert claimed is not None
    await runner.run_batch(claimed)
    final = store.get_batch(None, batch.id)
    assert final is not None and final.status == "expired"
    assert final.doc["expired_at"] is not None
    error_file = store.get_file(None, final.doc["error_file_id"])
    assert error_file is not None
    errors = [json.loads(line) for line in Path(error_file.path).read_text().splitlines()]
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("x-0", "batch_expired"),
        ("x-2", "batch_expired"),
    ]
    assert final.doc["output_file_id"] is not None
    store.close()


async def test_lines_of_a_model_no_longer_served_fail_with_404(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")
    jobs = Jobs(store, tmp_path, JobsConfig())
    content = jsonl([chat_line(f"g-{i}") for i in range(2)])
    upload = save_upload(tmp_path, "k", "batch", "in.jsonl", io.BytesIO(content), 10**6)
    store.add_file(upload)
    batch = create_batch(jobs, "k", BatchSpec(upload.id, "/v1/chat/completions", "24h"), bool)
    runner = BatchRunner(jobs, {}, OpenGatekeeper(), "test-runner")  # served before a restart
    claimed = store.claim_batch("test-runner", 5.0)
    assert claimed is not None and claimed.id == batch.id
    await runner.run_batch(claimed)
    final = store.get_batch(None, batch.id)
    assert final is not None and final.status == "completed"
    assert final.doc["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    error_file = store.get_file(None, final.doc["error_file_id"])
    assert error_file is not None
    errors = [json.loads(line) for line in Path(error_file.path).read_text().splitlines()]
    assert {e["response"]["status_code"] for e in errors} == {404}
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    store.close()

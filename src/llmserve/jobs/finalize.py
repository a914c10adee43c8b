"""The end of a batch: every line gets an answer, then the output and error files are written.

Lines that never ran (the batch was cancelled or expired first) go to the error file with
`batch_cancelled` or `batch_expired`, so every `custom_id` appears exactly once in the two files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from llmserve.jobs.files import write_lines
from llmserve.jobs.objects import error_line
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import BatchRecord, FileRecord
from llmserve.jobs.transitions import RUNNING_BATCH_STATUSES
from llmserve.jobs.validation import input_lines, parse_line
from llmserve.jobs.wire import BatchUpdate, ResultLine

Ending = Literal["finalizing", "expired", "cancelling"]  # the status a batch ends from
FinalStatus = Literal["completed", "expired", "cancelled"]
_FINAL: Final[
    Mapping[Ending, tuple[FinalStatus, Literal["completed_at", "expired_at", "cancelled_at"]]]
] = {
    "finalizing": ("completed", "completed_at"),
    "expired": ("expired", "expired_at"),
    "cancelling": ("cancelled", "cancelled_at"),
}
_UNRUN: Final[Mapping[Ending, tuple[str, str]]] = {
    "cancelling": ("batch_cancelled", "The batch was cancelled before this ran."),
    "expired": ("batch_expired",
                "This request could not be executed before the completion window expired."),
}  # fmt: skip


def ending_of(record: BatchRecord) -> Ending | None:
    """The status the batch ends from, or None when it has already ended (failed)."""
    if record.status == "cancelling":
        return "cancelling"
    if record.status in RUNNING_BATCH_STATUSES:
        is_expired = time.time() >= record.doc["expires_at"]
        counts = record.doc["request_counts"]
        if is_expired and counts["completed"] + counts["failed"] < counts["total"]:
            return "expired"
        return "finalizing"
    return None


async def finalize_batch(jobs: Jobs, record: BatchRecord) -> None:
    """Write the files and set the final status (completed, cancelled or expired)."""
    ending = ending_of(record)
    if ending is None:
        return
    store, now = jobs.store, int(time.time())
    if ending == "finalizing" and record.status != "finalizing":
        record = await jobs.call(
            store.update_batch, record.id, "finalizing", {"finalizing_at": now}
        )
    output_file, error_file = await jobs.call(write_result_files, jobs, record, ending)
    final, final_at = _FINAL[ending]
    fields: BatchUpdate = {
        "output_file_id": output_file.id if output_file else None,
        "error_file_id": error_file.id if error_file else None,
    }
    fields[final_at] = int(time.time())
    await jobs.call(store.update_batch, record.id, final, fields)


def write_result_files(
    jobs: Jobs, record: BatchRecord, ending: Ending
) -> tuple[FileRecord | None, FileRecord | None]:
    """The output file (lines that answered 200) and the error file (all others)."""
    results = jobs.store.result_lines(record.id)
    outputs = [r.line for r in results if not r.is_error]
    errors = [r.line for r in results if r.is_error]
    if ending in _UNRUN:
        errors += unrun_lines(jobs, record, {r.line_no for r in results}, ending)
    files: list[FileRecord | None] = []
    for lines, kind in ((outputs, "output"), (errors, "error")):
        if not lines:
            files.append(None)
            continue
        encoded = (json.dumps(line).encode() + b"\n" for line in lines)
        made = write_lines(jobs.home, record.owner, f"{record.id}_{kind}.jsonl", encoded)
        jobs.store.add_file(made)
        files.append(made)
    return files[0], files[1]


def unrun_lines(
    jobs: Jobs, record: BatchRecord, done: set[int], ending: Ending
) -> list[ResultLine]:
    """An error line for each input line without a result."""
    code, message = _UNRUN[ending]
    found = jobs.store.get_file(None, record.doc["input_file_id"])
    if found is None:
        return []
    lines = []
    for line_no, raw in input_lines(Path(found.path)):
        parsed = parse_line(raw)
        if line_no not in done and parsed is not None:
            custom_id = str(parsed.get("custom_id"))
            lines.append(error_line(record.id, line_no, custom_id, code, message))
    return lines

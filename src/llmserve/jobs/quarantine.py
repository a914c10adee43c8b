"""Poison quarantine: work during which the server process died twice is failed, not re-run.

A batch line or background response is counted (`JobStore.start_attempt`, committed) before it
starts. A count over `MAX_ATTEMPTS` means the process died during every earlier start: running it
again could kill the server again, in a loop, so it ends with `DIED_MESSAGE` and the rest of the
batch goes on.
"""

from __future__ import annotations

from llmserve.jobs.service import Jobs

MAX_ATTEMPTS = 2
QUARANTINED_CODE = "server_died"
DIED_MESSAGE = (
    "The server process died twice while running this request, so it was not run a third "
    "time. Check the request (a very large or deeply nested grammar, say) and send it again."
)


async def is_quarantined(jobs: Jobs, job_id: str, part: int) -> bool:
    """Count this start of (`job_id`, `part`); True when it must not run (it died twice)."""
    attempts = await jobs.call(jobs.store.start_attempt, job_id, part)
    return attempts > MAX_ATTEMPTS

"""A revoked key's jobs end with it: its batches are cancelled, its background responses too.

The server's admin API calls the store directly; `llmserve keys revoke` (another process) opens
the job store of the same home. Running batches see `cancelling` within a lease renewal (≤ 1 s)
and background responses see `cancelled` within half a second (their runners poll).
"""

from __future__ import annotations

import time
from pathlib import Path

from llmserve.jobs.open_store import open_job_store
from llmserve.jobs.service import job_store_path


def cancel_jobs_of(home: Path, key_id: str, database: str | None = None) -> tuple[int, int]:
    """Cancel the key's unfinished batches and background responses in the job store of `home`
    (or of `database`, the server's --database)."""
    if database is None and not job_store_path(home).exists():
        return 0, 0
    store = open_job_store(home, database)
    try:
        return store.cancel_jobs_of(key_id, int(time.time()))
    finally:
        store.close()

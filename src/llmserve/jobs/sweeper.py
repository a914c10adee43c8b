"""The sweeper: every `jobs.sweep_interval_s`, expired files leave the disk and the store, and
stored responses older than `jobs.response_ttl_days` are deleted with their events."""

from __future__ import annotations

import asyncio
import logging
import time

from llmserve.jobs.files import delete_contents
from llmserve.jobs.service import Jobs

logger = logging.getLogger(__name__)


def sweep_once(jobs: Jobs, now: float) -> tuple[int, int]:
    """Delete what has expired by `now`; (files, responses) deleted."""
    files = jobs.store.pop_expired_files(now)
    for record in files:
        delete_contents(record)
    responses = jobs.store.delete_responses_before(now - jobs.config.response_ttl_s)
    return len(files), responses


async def sweep_forever(jobs: Jobs) -> None:
    """Sweep now and then every interval until cancelled; a failed sweep is logged and retried."""
    while True:
        try:
            files, responses = await asyncio.to_thread(sweep_once, jobs, time.time())
        except Exception:  # NOTE: a busy or broken store must not end the sweeper
            logger.exception("sweeping expired files and responses failed")
        else:
            if files or responses:
                logger.info("deleted %d expired files and %d old responses", files, responses)
        await asyncio.sleep(jobs.config.sweep_interval_s)

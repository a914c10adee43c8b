"""The job runners of one server process, started and stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Mapping

from llmserve.backends.base import Backend
from llmserve.jobs.background import BackgroundRunner
from llmserve.jobs.runner import BatchRunner, UsageSink
from llmserve.jobs.service import Jobs
from llmserve.jobs.sweeper import sweep_forever


def holder_name() -> str:
    """This process's name on the leases it takes (host, pid and a random part)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class JobWorkers:
    """A batch runner and a background-response runner, as tasks on the server's loop."""

    def __init__(self, jobs: Jobs, backends: Mapping[str, Backend], usage: UsageSink) -> None:
        holder = holder_name()
        self.jobs = jobs
        self.batches = BatchRunner(jobs, backends, usage, holder)
        self.responses = BackgroundRunner(jobs, backends, usage, holder)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.batches.run_forever(), name="batch-runner"),
            asyncio.create_task(self.responses.run_forever(), name="background-runner"),
            asyncio.create_task(
                self.jobs.slots.sweep_forever(self.jobs.store), name="background-slots"
            ),
            asyncio.create_task(sweep_forever(self.jobs), name="expiry-sweeper"),
        ]

    async def stop(self) -> None:
        """Cancel the runners; their leases lapse and another process (or a restart) resumes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.responses.stop()
        await self.jobs.slots.release_all()

"""`BatchRunner`: takes batches from the store by lease and runs their lines at batch priority.

Each finished line is committed at once (`JobStore.record_line`), so a runner that dies loses
only the lines in flight: the next runner to claim the batch (after the lease lapses) skips the
committed lines and runs the rest under the same request ids. Output and error files are written
from the committed lines when every line has an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Protocol

from llmserve.auth.base import UsageRecord
from llmserve.backends.base import Backend
from llmserve.database.postgres import DatabaseUnavailableError
from llmserve.errors import LlmserveError
from llmserve.ids import line_request_id
from llmserve.jobs.finalize import finalize_batch
from llmserve.jobs.lines import LineOutcome, run_line
from llmserve.jobs.objects import error_line, response_line
from llmserve.jobs.quarantine import DIED_MESSAGE, QUARANTINED_CODE, is_quarantined
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import BatchRecord, LineResult
from llmserve.jobs.transitions import StatusTransitionError
from llmserve.jobs.validation import BatchLine, input_lines, parse_line
from llmserve.jobs.wire import BatchError, BatchUpdate
from llmserve.serving.context import ServingContext
from llmserve.serving.routing import (
    VARIANT_HEADER,
    job_principal,
    resolve_backend,
    variant_usage,
)
from llmserve.serving.usage import UsageMeter
from llmserve.types import Priority

logger = logging.getLogger(__name__)
IDLE_POLL_S = 0.2  # how often an idle runner asks the store for work
LINES_PER_READ = 256


def is_database_outage(exc: BaseException) -> bool:
    """True for PostgreSQL going away (alone, or inside the line tasks' exception group)."""
    if isinstance(exc, BaseExceptionGroup):
        return any(is_database_outage(inner) for inner in exc.exceptions)
    return isinstance(exc, DatabaseUnavailableError)


class UsageSink(Protocol):
    """Where a finished line's tokens are counted against its key (the gatekeeper)."""

    def record_usage(self, key_id: str, usage: UsageRecord) -> None: ...


class BatchRunner:
    """Runs one batch at a time for this process; many processes may share one store."""

    def __init__(
        self, jobs: Jobs, backends: Mapping[str, Backend], usage: UsageSink, holder: str
    ) -> None:
        self.jobs = jobs
        self.backends = backends
        self.usage = usage
        self.holder = holder  # this runner's name on the leases it takes

    async def run_forever(self) -> None:
        """Claim and run batches until cancelled."""
        while True:
            try:
                record = await self.jobs.call(
                    self.jobs.store.claim_batch, self.holder, self.jobs.config.lease_s
                )
            except DatabaseUnavailableError:  # issue 21: PostgreSQL away; ask again soon
                record = None
            if record is None:
                await asyncio.sleep(IDLE_POLL_S)
                continue
            try:
                await self.run_batch(record)
            except StatusTransitionError as exc:  # cancelled meanwhile: the next claim sees it
                logger.info("batch %s changed status while running: %s", record.id, exc)
            except Exception as exc:  # NOTE: one broken batch must not stop the runner
                if is_database_outage(exc):  # not the batch's fault: it resumes later
                    logger.warning("batch %s paused: the database is away", record.id)
                    continue
                logger.exception("batch %s failed", record.id)
                await self._fail(record, exc)
            finally:
                with contextlib.suppress(Exception):
                    await self.jobs.call(self.jobs.store.release_batch, record.id, self.holder)

    async def _fail(self, record: BatchRecord, exc: Exception) -> None:
        """End a batch the runner could not run, saying why in its `errors`."""
        error: BatchError = {"code": "server_error", "line": None, "param": None,
                             "message": f"The batch could not run: {exc}"}  # fmt: skip
        fields: BatchUpdate = {
            "failed_at": int(time.time()),
            "errors": {"object": "list", "data": [error]},
        }
        with contextlib.suppress(Exception):
            await self.jobs.call(self.jobs.store.update_batch, record.id, "failed", fields)

    async def run_batch(self, record: BatchRecord) -> None:
        """Take the batch one step further: validate, run the lines, finalize."""
        if record.status == "validating":
            record = await self._start(record)
        is_expired = time.time() >= record.doc["expires_at"]
        if record.status == "in_progress" and not is_expired and not await self._run_lines(record):
            return  # the lease was lost: another runner has the batch now
        refreshed = await self.jobs.call(self.jobs.store.get_batch, None, record.id)
        if refreshed is not None:
            await finalize_batch(self.jobs, refreshed)

    async def _start(self, record: BatchRecord) -> BatchRecord:
        store, now = self.jobs.store, int(time.time())
        if record.doc.get("errors"):
            return await self.jobs.call(store.update_batch, record.id, "failed", {"failed_at": now})
        return await self.jobs.call(
            store.update_batch, record.id, "in_progress", {"in_progress_at": now}
        )

    async def _run_lines(self, record: BatchRecord) -> bool:
        """Run every line not yet committed; False when the lease was lost on the way."""
        done = await self.jobs.call(self.jobs.store.done_line_numbers, record.id)
        watch = asyncio.create_task(self._hold_lease(record))
        lines = asyncio.create_task(self._run_pending(record, done))
        await asyncio.wait({watch, lines}, return_when=asyncio.FIRST_COMPLETED)
        for task in (watch, lines):
            task.cancel()
        results = await asyncio.gather(watch, lines, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results[0] is not False

    async def _hold_lease(self, record: BatchRecord) -> bool:
        """Renew the lease; return when it is lost (False), or the batch is cancelled or expired."""
        store, lease_s = self.jobs.store, self.jobs.config.lease_s
        while True:
            await asyncio.sleep(min(lease_s / 3, 1.0))
            if not await self.jobs.call(store.renew_batch, record.id, self.holder, lease_s):
                return False
            current = await self.jobs.call(store.get_batch, None, record.id)
            if current is None or current.status != "in_progress":
                return True
            if time.time() >= current.doc["expires_at"]:
                return True

    async def _run_pending(self, record: BatchRecord, done: set[int]) -> None:
        """Every line not in `done`, at most `jobs.max_concurrent_lines` at once."""
        limit = asyncio.Semaphore(self.jobs.config.max_concurrent_lines)
        async with asyncio.TaskGroup() as group:
            async for line in self._pending_lines(record, done):
                await limit.acquire()
                task = group.create_task(self._run_one(record, line))
                task.add_done_callback(lambda _: limit.release())

    async def _pending_lines(self, record: BatchRecord, done: set[int]) -> AsyncIterator[BatchLine]:
        path = Path(await self._input_path(record))
        reader = input_lines(path)
        while chunk := await asyncio.to_thread(list, itertools.islice(reader, LINES_PER_READ)):
            for line_no, raw in chunk:
                parsed = parse_line(raw)
                body = None if parsed is None else parsed.get("body")
                if line_no not in done and parsed is not None and isinstance(body, dict):
                    yield BatchLine(line_no, str(parsed["custom_id"]), body)

    async def _input_path(self, record: BatchRecord) -> str:
        found = await self.jobs.call(self.jobs.store.get_file, None, record.doc["input_file_id"])
        if found is None:
            raise FileNotFoundError(f"input file of {record.id} is gone")
        return found.path

    async def _run_one(self, record: BatchRecord, line: BatchLine) -> None:
        if await is_quarantined(self.jobs, record.id, line.line_no):
            await self._quarantine(record, line)
            return
        outcome, variant = await self._answer(record, line)
        meter = outcome.meter
        headers = None if variant is None else {VARIANT_HEADER: variant}  # as HTTP names it
        answer = response_line(
            record.id, line.line_no, line.custom_id, outcome.status_code, outcome.body, headers
        )
        result = LineResult(
            line.line_no, line.custom_id, outcome.status_code != 200, answer,
            meter.prompt_tokens, meter.completion_tokens,
        )  # fmt: skip
        if await self.jobs.call(self.jobs.store.record_line, record.id, result):
            self.usage.record_usage(record.owner, variant_usage(meter.record(), variant))

    async def _answer(self, record: BatchRecord, line: BatchLine) -> tuple[LineOutcome, str | None]:
        """The endpoint's answer to the line, and the canary variant that gave it (chosen once:
        that variant tokenizes and generates the whole line)."""
        model = str(line.body.get("model"))
        try:
            resolved = await resolve_backend(self.backends, job_principal(record.owner), model)
        except LlmserveError as error:  # the server no longer serves it (changed config)
            return LineOutcome(error.status_code, error.to_body(), UsageMeter(model)), None
        context = ServingContext(
            line_request_id(record.id, line.line_no), record.owner, model, resolved.backend,
            priority=Priority.BATCH,
        )  # fmt: skip
        return await run_line(context, record.doc["endpoint"], line.body), resolved.variant

    async def _quarantine(self, record: BatchRecord, line: BatchLine) -> None:
        """Fail a line the process died during twice: the error file says so."""
        logger.error("batch %s line %d: the process died running it twice", record.id, line.line_no)
        body = error_line(record.id, line.line_no, line.custom_id, QUARANTINED_CODE, DIED_MESSAGE)
        result = LineResult(line.line_no, line.custom_id, True, body, 0, 0)
        await self.jobs.call(self.jobs.store.record_line, record.id, result)

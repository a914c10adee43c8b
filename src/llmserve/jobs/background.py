"""`BackgroundRunner`: `background: true` responses, run from the store at background priority.

Every event is stored as it is made, so any process can replay a response's stream
(`starting_after`) and follow it live. A response that was running when its process died is
not re-run halfway: it ends `failed` with an error that says so (never stuck `in_progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping

from llmserve.auth.base import UsageRecord
from llmserve.backends.base import Backend
from llmserve.database.postgres import DatabaseUnavailableError
from llmserve.errors import LlmserveError
from llmserve.ids import request_id_of_response
from llmserve.jobs.quarantine import DIED_MESSAGE, QUARANTINED_CODE, is_quarantined
from llmserve.jobs.runner import IDLE_POLL_S, UsageSink
from llmserve.jobs.service import Jobs
from llmserve.jobs.store import ResponseRecord
from llmserve.jobs.stored_responses import StoredConversations, StoredResponses
from llmserve.serving.context import ServingContext
from llmserve.serving.response_objects import ResponseEvent, ResponseObject
from llmserve.serving.responses import ResponseStores, prepare_response
from llmserve.serving.routing import job_principal, resolve_backend, variant_usage
from llmserve.serving.schemas_responses import ResponseCreateRequest
from llmserve.types import Priority

logger = logging.getLogger(__name__)
EVENTS_FLUSH_S = 0.25  # how long an event may wait before its run of events is stored
FLUSH_AT = frozenset(
    {"response.created", "response.completed", "response.failed", "response.incomplete"}
)
RESTARTED = "The server restarted while this background response was running; create it again."


class BackgroundRunner:
    """Runs queued background responses, one at a time per claim, until cancelled."""

    def __init__(
        self, jobs: Jobs, backends: Mapping[str, Backend], usage: UsageSink, holder: str
    ) -> None:
        self.jobs = jobs
        self.backends = backends
        self.usage = usage
        self.holder = holder
        self._running: set[asyncio.Task[None]] = set()

    async def run_forever(self) -> None:
        while True:
            try:
                await self._take_one()
            except DatabaseUnavailableError as exc:  # issue 21: PostgreSQL away; ask again soon
                logger.warning("background runner paused: %s", exc)
                await asyncio.sleep(IDLE_POLL_S)
            except Exception:  # NOTE: the store was unreadable a moment; keep serving
                logger.exception("background runner could not take a response")
                await asyncio.sleep(IDLE_POLL_S)

    async def _take_one(self) -> None:
        """Claim one response: run it, fail it (its process died), or wait when none is queued."""
        record = await self.jobs.call(
            self.jobs.store.claim_response, self.holder, self.jobs.config.lease_s
        )
        if record is None:
            await asyncio.sleep(IDLE_POLL_S)
        elif record.status == "in_progress":
            await self.fail(record, "server_error", RESTARTED)
        else:
            task = asyncio.create_task(self.run(record))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        """Cancel the responses running here; a restart ends them `failed` (see `RESTARTED`)."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def run(self, record: ResponseRecord) -> None:
        """Generate the response, storing each event; stop when it is cancelled."""
        if await is_quarantined(self.jobs, record.id, 0):
            await self.fail(record, QUARANTINED_CODE, DIED_MESSAGE)
            return
        body = ResponseCreateRequest.model_validate(record.request["body"])
        try:  # NOTE: the variant its route chose (and named) tokenizes and generates it
            resolved = await resolve_backend(
                self.backends, job_principal(record.owner), body.model,
                variant=record.request.get("variant"),
            )  # fmt: skip
        except LlmserveError:
            await self.fail(record, "model_not_found", f"The model `{body.model}` is gone.")
            return
        context = ServingContext(
            request_id_of_response(record.id), record.owner, body.model, resolved.backend,
            priority=Priority.BACKGROUND,
        )  # fmt: skip
        try:
            stores = ResponseStores(
                StoredResponses(self.jobs.store), StoredConversations(self.jobs.store)
            )
            generation = await prepare_response(context, body, stores)
            record.status = "in_progress"
            record.response = {**record.response, "status": "in_progress"}
            await self.jobs.call(self.jobs.store.put_response, record)
            running = asyncio.create_task(self._store_events(record, generation.chunks()))
            await self._hold(record, running)
        except LlmserveError as error:
            await self.fail(record, error.code or "server_error", error.message)
            return
        except Exception:
            logger.exception("background response %s failed", record.id)
            await self.fail(record, "server_error", "The response failed on the server.")
            return
        usage = variant_usage(generation.meter.record(), resolved.variant)  # MODEL@VARIANT
        if not await self.jobs.slots.release(record.id, usage):  # created by another process
            self.usage.record_usage(record.owner, usage)

    async def _store_events(
        self, record: ResponseRecord, events: AsyncGenerator[ResponseEvent, None]
    ) -> None:
        """Store the events in runs (one compressed row each, not one row per delta): a run is
        written once it is `EVENTS_FLUSH_S` old, and at the response's first and last events."""
        pending: list[ResponseEvent] = []
        started = time.monotonic()
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if not pending:
                    started = time.monotonic()
                pending.append(event.copy())
                at_once = event["type"] in FLUSH_AT
                if at_once or time.monotonic() - started >= EVENTS_FLUSH_S:
                    await self.jobs.call(self.jobs.store.add_events, record.id, pending)
                    pending = []
        await self.jobs.call(self.jobs.store.add_events, record.id, pending)

    async def _hold(self, record: ResponseRecord, running: asyncio.Task[None]) -> None:
        """Renew the lease while `running` runs; cancel it once the response is cancelled."""
        store, lease_s = self.jobs.store, self.jobs.config.lease_s
        while not running.done():
            await asyncio.wait({running}, timeout=min(lease_s / 3, 0.5))
            current = await self.jobs.call(store.get_response, None, record.id)
            renewed = await self.jobs.call(store.renew_response, record.id, self.holder, lease_s)
            if current is None or current.status == "cancelled" or not renewed:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                return
        await running

    async def fail(self, record: ResponseRecord, code: str, message: str) -> None:
        """End the response `failed` with `error`, and store a `response.failed` event."""
        response: ResponseObject = {
            **record.response,
            "status": "failed",
            "error": {"code": code, "message": message},
        }
        record.status, record.response = "failed", response
        await self.jobs.call(self.jobs.store.put_response, record)
        events = await self.jobs.call(self.jobs.store.events_after, record.id, -1)
        number = events[-1]["sequence_number"] + 1 if events else 0
        event: ResponseEvent = {
            "type": "response.failed",
            "sequence_number": number,
            "response": response,
        }
        await self.jobs.call(self.jobs.store.add_event, record.id, number, event)
        model = str(record.request.get("body", {}).get("model", ""))
        await self.jobs.slots.release(record.id, UsageRecord(model, is_error=True))

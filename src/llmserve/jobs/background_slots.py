"""`BackgroundSlots`: a background response holds one of its key's in-flight slots until it ends.

The create route takes the slot (so rpm, tpm and `max_concurrency` count the response at
creation: over a limit is a 429) and leaves it here. The runner releases it with the response's
usage when it ends in this process; `sweep` releases the slots of responses that ended any other
way (cancelled while queued, deleted, run by another process) once the store says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from llmserve.auth.base import Slot, UsageRecord
from llmserve.jobs.store import JobStore
from llmserve.statuses import ENDED_RESPONSE_STATUSES

logger = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 0.5


class BackgroundSlots:
    """The slots of this process's background responses, by response id (event loop only)."""

    def __init__(self) -> None:
        self._slots: dict[str, tuple[Slot, str]] = {}  # id -> (slot, model)

    def __len__(self) -> int:
        return len(self._slots)

    def hold(self, response_id: str, slot: Slot, model: str) -> None:
        self._slots[response_id] = (slot, model)

    async def release(self, response_id: str, usage: UsageRecord) -> bool:
        """Free the response's slot, counting `usage`; False when this process held none."""
        held = self._slots.pop(response_id, None)
        if held is None:
            return False
        await held[0].release(usage)
        return True

    async def sweep(self, store: JobStore) -> None:
        """Release the slots of responses the store shows ended (or gone)."""
        for response_id, (_, model) in list(self._slots.items()):
            record = await asyncio.to_thread(store.get_response, None, response_id)
            if record is None or record.status in ENDED_RESPONSE_STATUSES:
                is_error = record is None or record.status == "failed"
                await self.release(response_id, UsageRecord(model, is_error=is_error))

    async def sweep_forever(self, store: JobStore) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            with contextlib.suppress(Exception):
                await self.sweep(store)

    async def release_all(self) -> None:
        """On shutdown: every slot freed (the responses resume or fail in the next process)."""
        for response_id, (_, model) in list(self._slots.items()):
            await self.release(response_id, UsageRecord(model))

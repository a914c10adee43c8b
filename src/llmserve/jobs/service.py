"""`Jobs`: what the job routes and runners share — the store, where files live, the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

from llmserve.config import JobsConfig
from llmserve.jobs.background_slots import BackgroundSlots
from llmserve.jobs.store import JobStore

P = ParamSpec("P")
T = TypeVar("T")
STORE_FILENAME = "jobs.db"


def job_store_path(home: Path) -> Path:
    """The job store's SQLite file in the llmserve home."""
    return home / STORE_FILENAME


@dataclass(frozen=True)
class Jobs:
    """The durable job store and the settings of the Files and Batch APIs."""

    store: JobStore
    home: Path
    config: JobsConfig
    slots: BackgroundSlots = field(default_factory=BackgroundSlots)  # held by background responses

    async def call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store method off the event loop (SQLite may wait for another writer)."""
        return await asyncio.to_thread(method, *args, **kwargs)

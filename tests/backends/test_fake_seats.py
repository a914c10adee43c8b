"""The fake backend's seats: cancelling waiting requests never frees a seat they never took."""

from __future__ import annotations

import asyncio

from llmserve.backends.fake import FakeBackend
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest


async def consume(backend: FakeBackend, request_id: str) -> None:
    request = GenerateRequest(request_id, (1, 2, 3), SamplingParams(max_tokens=50))
    async for _ in backend.generate(request):
        pass


async def test_cancelling_running_and_waiting_requests_at_once_leaves_no_seat_taken() -> None:
    backend = FakeBackend(max_concurrency=1, token_delay_s=0.01)
    tasks = [asyncio.create_task(consume(backend, f"r{i}")) for i in range(6)]
    while (backend.load().num_running, backend.load().num_waiting) != (1, 5):
        await asyncio.sleep(0.001)
    for task in tasks:  # NOTE: as a cancelled batch cancels its lines: all in one go
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (backend.load().num_running, backend.load().num_waiting) == (0, 0)

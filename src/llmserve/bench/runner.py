"""Send the run's requests at their arrival times, at most `max_concurrency` at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from llmserve.bench.arrivals import arrival_offsets
from llmserve.bench.dataset import SampleRequest, fit_to_server_tokens, random_requests
from llmserve.bench.request import Endpoint, RequestOutput, send_request

REQUEST_TIMEOUT_S = 6 * 60 * 60  # as vLLM's: a long run on a slow server is still a result


@dataclass(frozen=True)
class Workload:
    """What to send and how fast."""

    num_prompts: int
    input_len: int
    output_len: int
    range_ratio: float
    seed: int
    request_rate: float
    burstiness: float
    max_concurrency: int | None


@dataclass(frozen=True)
class RunOutcome:
    """Every request's output and the run's wall time."""

    outputs: list[RequestOutput]
    duration: float


def http_client(max_concurrency: int | None) -> httpx.AsyncClient:
    """One client for the run: connections reused, no hidden pool limit below the concurrency."""
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=None)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=30.0)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


async def prepare_requests(
    client: httpx.AsyncClient, root: str, model: str, workload: Workload, console: Console
) -> list[SampleRequest]:
    """The run's prompts, cut to the server's tokens when it can count them."""
    samples = random_requests(
        workload.num_prompts,
        workload.input_len,
        workload.output_len,
        workload.range_ratio,
        workload.seed,
    )
    samples, exact = await fit_to_server_tokens(client, root, model, samples)
    if not exact:
        console.print("The server has no vLLM-style /tokenize: prompts are one word per token.")
    return samples


async def _send_when_free(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    sample: SampleRequest,
    limit: asyncio.Semaphore | None,
    on_done: Callable[[], None],
) -> RequestOutput:
    arrived = time.perf_counter()
    if limit is None:
        output = await send_request(client, endpoint, sample)
    else:
        async with limit:
            output = await send_request(client, endpoint, sample)
    output.queue_time = output.start_time - arrived
    on_done()
    return output


async def issue_requests(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    samples: Sequence[SampleRequest],
    workload: Workload,
    on_done: Callable[[], None],
) -> RunOutcome:
    """Send each sample at its arrival offset; wait for all of them."""
    rng = np.random.default_rng(workload.seed)
    offsets = arrival_offsets(len(samples), workload.request_rate, workload.burstiness, rng)
    limit = asyncio.Semaphore(workload.max_concurrency) if workload.max_concurrency else None
    started = time.perf_counter()
    tasks: list[asyncio.Task[RequestOutput]] = []
    for sample, offset in zip(samples, offsets, strict=True):
        delay = started + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        send = _send_when_free(client, endpoint, sample, limit, on_done)
        tasks.append(asyncio.create_task(send))
    outputs = list(await asyncio.gather(*tasks))
    return RunOutcome(outputs, time.perf_counter() - started)


def progress_bar(console: Console, disabled: bool) -> Progress:
    """The live bar of finished requests (on stderr)."""
    columns: list[Any] = ["[progress.description]{task.description}", BarColumn()]
    columns += [MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=console, disable=disabled)


async def run_workload(
    root: str, endpoint: Endpoint, workload: Workload, *, show_progress: bool
) -> RunOutcome:
    """Prepare the prompts, then run them with a progress bar."""
    console = Console(stderr=True)
    async with http_client(workload.max_concurrency) as client:
        samples = await prepare_requests(client, root, endpoint.model, workload, console)
        distribution = "Poisson process" if workload.burstiness == 1.0 else "Gamma distribution"
        print(f"Traffic request rate: {workload.request_rate}")
        print(f"Burstiness factor: {workload.burstiness} ({distribution})")
        print(f"Maximum request concurrency: {workload.max_concurrency}", flush=True)
        with progress_bar(console, disabled=not show_progress) as progress:
            task = progress.add_task("requests", total=len(samples))
            return await issue_requests(
                client, endpoint, samples, workload, lambda: progress.advance(task)
            )

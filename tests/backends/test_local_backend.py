from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmserve.backends.base import Backend
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig
from llmserve.errors import OverloadedError, UnsupportedOperationError
from llmserve.sampling import SamplingParams
from llmserve.types import ChatMessage, GenerateOutput, GenerateRequest, Priority


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture
async def backend(home: Path) -> AsyncIterator[LocalBackend]:
    local = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL, max_model_len=512),
        EngineConfig(kv_cache_memory_mb=4, max_num_seqs=2, num_threads=1),
        home,
    )
    await local.start()
    yield local
    await local.shutdown()


def request(
    backend: LocalBackend, request_id: str, max_tokens: int, **kw: object
) -> GenerateRequest:
    prompt = backend.encode(backend.render_chat([ChatMessage("user", "Hi there")]))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    return GenerateRequest(request_id, tuple(prompt), params, **kw)  # type: ignore[arg-type]


async def collect(backend: LocalBackend, req: GenerateRequest) -> list[GenerateOutput]:
    return [o async for o in backend.generate(req)]


async def test_local_backend_implements_the_protocol(backend: LocalBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.info.max_model_len == 512
    assert backend.info.kind == "chat"
    with pytest.raises(UnsupportedOperationError):
        await backend.embed(["x"])


async def test_streams_text_and_usage_until_length(backend: LocalBackend) -> None:
    outputs = await collect(backend, request(backend, "r1", 8))
    assert [o.num_output_tokens for o in outputs] == list(range(1, 9))
    assert outputs[-1].finish_reason == "length"
    ids = [t for o in outputs for t in o.token_ids]
    assert "".join(o.text for o in outputs) == backend.decode(ids)


async def test_concurrent_requests_match_their_lone_runs(backend: LocalBackend) -> None:
    lone = await collect(backend, request(backend, "lone", 10))
    together = await asyncio.gather(
        *(collect(backend, request(backend, f"c{i}", 10)) for i in range(4))
    )
    for outputs in together:
        assert [o.token_ids for o in outputs] == [o.token_ids for o in lone]


async def test_closing_the_stream_early_aborts_and_frees_blocks(backend: LocalBackend) -> None:
    stream = backend.generate(request(backend, "early", 200))
    first = await anext(stream)
    assert first.num_output_tokens == 1
    await stream.aclose()  # type: ignore[attr-defined]
    load = backend.load()
    assert (load.num_running, load.num_waiting) == (0, 0)
    outputs = await collect(backend, request(backend, "early", 3))  # the id is free again
    assert outputs[-1].finish_reason == "length"


async def test_cancelled_consumer_aborts_its_request(backend: LocalBackend) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.generate(request(backend, "cancel-me", 500)):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.load().num_running == 0


async def test_load_counts_waiting_requests_by_tenant(backend: LocalBackend) -> None:
    streams = [
        backend.generate(
            request(backend, f"t{i}", 300, tenant=tenant, priority=Priority.BACKGROUND)
        )
        for i, tenant in enumerate(["a", "a", "b", "b", "b"])
    ]
    await anext(streams[0])
    tasks = [asyncio.create_task(anext(s)) for s in streams[1:]]
    deadline = time.monotonic() + 60
    # background work takes at most engine.batch_share (half) of the 2 seats
    while (backend.load().num_running, backend.load().num_waiting) != (1, 4):
        assert time.monotonic() < deadline, f"load is still {backend.load()}"
        await asyncio.sleep(0.01)
    load = backend.load()
    assert load.num_running == 1
    assert load.waiting_by_tenant == {"a": 1, "b": 3}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    assert backend.load().num_running == 0


async def test_shutdown_aborts_requests_in_flight(home: Path) -> None:
    local = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL),
        EngineConfig(kv_cache_memory_mb=4),
        home,
    )
    await local.start()
    stream = local.generate(request(local, "s", 500))
    await anext(stream)
    await local.shutdown()
    rest = [o async for o in stream]
    assert rest[-1].finish_reason == "abort"


async def test_event_loop_stays_responsive_while_streams_run(home: Path) -> None:
    local = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL),
        EngineConfig(kv_cache_memory_mb=8, max_num_seqs=32),
        home,
    )
    await local.start()
    streams = [asyncio.create_task(collect(local, request(local, f"h{i}", 40))) for i in range(32)]
    worst = 0.0
    loop = asyncio.get_running_loop()
    while not all(t.done() for t in streams):
        before = loop.time()
        await asyncio.sleep(0.005)
        worst = max(worst, loop.time() - before)
    await local.shutdown()
    assert all(t.result()[-1].finish_reason == "length" for t in streams)
    assert worst < 0.5  # the engine steps on its own thread, not on the event loop


def test_max_model_len_defaults_to_the_models_position_limit(home: Path) -> None:
    local = LocalBackend(ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL), EngineConfig(), home)
    assert local.info.max_model_len == 2048
    assert local.info.name == "tiny"


async def test_generate_after_shutdown_is_refused_as_overloaded(home: Path) -> None:
    local = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL),
        EngineConfig(kv_cache_memory_mb=4),
        home,
    )
    await local.start()
    req = request(local, "late", 2)
    await local.shutdown()
    with pytest.raises(OverloadedError, match="not loaded"):
        await anext(local.generate(req))

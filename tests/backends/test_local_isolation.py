"""LocalBackend: a request the engine cannot run fails alone; its neighbours' streams go on."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig
from llmserve.engine.engine_thread import RequestFailedError
from llmserve.engine.llm_engine import DuplicateRequestError
from llmserve.sampling import SamplingParams
from llmserve.types import ChatMessage, GenerateOutput, GenerateRequest

NUM_TOKENS = 24


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture
async def backend(home: Path) -> AsyncIterator[LocalBackend]:
    local = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL, max_model_len=512),
        EngineConfig(kv_cache_memory_mb=8, max_num_seqs=16, num_threads=1),
        home,
    )
    await local.start()
    yield local
    await local.shutdown()


def request(
    backend: LocalBackend, request_id: str, params: SamplingParams, tenant: str
) -> GenerateRequest:
    prompt = backend.encode(backend.render_chat([ChatMessage("user", f"Hi, {request_id}")]))
    return GenerateRequest(request_id, tuple(prompt), params, tenant=tenant)


def healthy(backend: LocalBackend, index: int) -> GenerateRequest:
    params = SamplingParams(max_tokens=NUM_TOKENS, temperature=0.0, ignore_eos=True)
    return request(backend, f"healthy-{index}", params, tenant="bob")


def poison(backend: LocalBackend, request_id: str, **values: Any) -> GenerateRequest:
    """A request with `values` written past validation, as a careless caller could send it."""
    params = SamplingParams(max_tokens=NUM_TOKENS, temperature=1.0, seed=1, ignore_eos=True)
    for name, value in values.items():
        object.__setattr__(params, name, value)
    return request(backend, request_id, params, tenant="alice")


async def collect(backend: LocalBackend, req: GenerateRequest) -> list[GenerateOutput]:
    return [o async for o in backend.generate(req)]


def token_ids(outputs: list[GenerateOutput]) -> list[int]:
    return [t for o in outputs for t in o.token_ids]


async def test_poison_requests_fail_alone_beside_healthy_streams(backend: LocalBackend) -> None:
    lone = [token_ids(await collect(backend, healthy(backend, i))) for i in range(3)]
    poisons = [
        poison(backend, "nan-temperature", temperature=math.nan),
        poison(backend, "float-seed", seed=1.5),
        poison(backend, "float-top-k", top_k=2.5),
        poison(backend, "nan-frequency", frequency_penalty=math.nan),
        poison(backend, "huge-seed", seed=2**70),  # wrapped into torch's range: completes
        poison(backend, "tiny-repetition", repetition_penalty=5e-324),
        poison(backend, "tiny-temperature", temperature=1e-45),  # greedy: completes
    ]
    results = await asyncio.gather(
        *(collect(backend, healthy(backend, i)) for i in range(3)),
        *(collect(backend, p) for p in poisons),
        return_exceptions=True,
    )
    for outputs, expected in zip(results[:3], lone, strict=True):
        assert isinstance(outputs, list)
        assert token_ids(outputs) == expected
        assert outputs[-1].finish_reason == "length"
    outcome = {
        p.request_id: type(r).__name__ if isinstance(r, BaseException) else r[-1].finish_reason
        for p, r in zip(poisons, results[3:], strict=True)
    }
    assert outcome == {
        "nan-temperature": "RequestFailedError",
        "float-seed": "RequestFailedError",
        "float-top-k": "RequestFailedError",
        "nan-frequency": "RequestFailedError",
        "huge-seed": "length",
        "tiny-repetition": "RequestFailedError",  # a positive logit / 5e-324 is inf
        "tiny-temperature": "length",
    }
    assert backend.load().num_running == backend.load().num_waiting == 0


async def test_failure_message_names_the_request_not_the_cause(backend: LocalBackend) -> None:
    with pytest.raises(RequestFailedError) as failed:
        await collect(backend, poison(backend, "p1", temperature=math.nan))
    assert str(failed.value) == "request p1 failed in the engine"
    assert "not finite" in str(failed.value.__cause__)  # the cause is for the log only


async def test_a_duplicate_request_id_is_refused_and_the_first_stream_completes(
    backend: LocalBackend,
) -> None:
    first = backend.generate(healthy(backend, 0))
    outputs = [await anext(first)]  # in flight
    with pytest.raises(DuplicateRequestError, match="'healthy-0' is already in flight"):
        await collect(backend, healthy(backend, 0))
    outputs += [o async for o in first]
    assert [o.num_output_tokens for o in outputs] == list(range(1, NUM_TOKENS + 1))
    assert outputs[-1].finish_reason == "length"
    # Once it is done, the id is free again.
    assert len(token_ids(await collect(backend, healthy(backend, 0)))) == NUM_TOKENS

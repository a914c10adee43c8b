"""LocalBackend behind the real API on a real uvicorn server: 32 streams and a fast /health."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, ServerConfig

MODEL = "tiny-local"


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL)
    engine = EngineConfig(kv_cache_memory_mb=16, max_num_seqs=32)
    config = ServerConfig(models=(model,), home=tmp_path, engine=engine)
    app = create_app(
        config, {MODEL: LocalBackend(model, engine, tmp_path)}, build_gatekeeper(config)
    )
    with LiveServer(app) as server:
        yield server.url


async def stream_chat(http: httpx.AsyncClient, index: int) -> list[str]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell me a story, number {index}"}],
        "max_tokens": 48,
        "stream": True,
    }
    lines = []
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])
    return lines


async def test_health_stays_fast_while_32_streams_run(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        streams = asyncio.gather(*(stream_chat(http, i) for i in range(32)))
        health_times = []
        while not streams.done():
            start = time.perf_counter()
            health = await http.get("/health")
            health_times.append(time.perf_counter() - start)
            assert health.status_code == 200
            await asyncio.sleep(0.02)
        results = await streams
    for lines in results:
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(line) for line in lines[:-1]]
        finish = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"]]
        assert finish[-1] in ("stop", "length")
    assert len(health_times) > 1  # /health answered while the streams were running
    assert max(health_times) < 1.0


def test_repeated_prompt_reports_its_cached_tokens_to_the_openai_sdk(base_url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    system = "You are a careful assistant who answers in one short paragraph. " * 8
    messages: Any = [
        {"role": "system", "content": system},
        {"role": "user", "content": "What is a KV cache?"},
    ]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream][-1]
    assert usage is not None and usage.prompt_tokens_details is not None
    # Whole 16-token blocks of the prompt, always leaving its last token to compute.
    expected = (usage.prompt_tokens - 1) // 16 * 16
    assert usage.prompt_tokens_details.cached_tokens == expected > 0

"""One streamed request and what the client measured of it, as `vllm bench serve` defines it.

A token chunk is an SSE chunk whose first choice carries text: a role-only first chunk (llmserve
and llama.cpp send one before generating) and the finish chunk are not tokens. TTFT is the time to
the first token chunk; ITL the gaps between token chunks; latency the time to the last chunk with
choices. Output tokens come from the server's usage (`stream_options.include_usage`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmserve.bench.dataset import SampleRequest
from llmserve.remote import describe_error


@dataclass(frozen=True)
class Endpoint:
    """Where and how every request of a run is sent."""

    url: str  # the full URL, e.g. http://host:8000/v1/completions
    model: str
    is_chat: bool
    headers: dict[str, str]
    extra_body: dict[str, Any]  # sampling fields, ignore_eos, --extra-body


@dataclass
class RequestOutput:
    """What one request took (seconds, `time.perf_counter` clock) and what it returned."""

    prompt_len: int
    success: bool = False
    error: str = ""
    start_time: float = 0.0
    queue_time: float = 0.0  # waited for a --max-concurrency slot before it was sent
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    output_tokens: int = 0
    generated_text: str = ""
    token_times: list[float] = field(default_factory=list)  # when each token chunk arrived


def request_body(endpoint: Endpoint, sample: SampleRequest) -> dict[str, Any]:
    """The JSON body for one sample: chat messages or a prompt, streamed with usage."""
    body: dict[str, Any] = {"model": endpoint.model, "stream": True}
    body["stream_options"] = {"include_usage": True}
    if endpoint.is_chat:
        body["messages"] = [{"role": "user", "content": sample.prompt}]
        body["max_completion_tokens"] = sample.output_len
    else:
        body["prompt"] = sample.prompt
        body["max_tokens"] = sample.output_len
    return {**body, **endpoint.extra_body}


def chunk_text(chunk: dict[str, Any], is_chat: bool) -> str | None:
    """The text of a chunk's first choice; None for a chunk without choices (usage)."""
    choices = chunk.get("choices")
    if not choices:
        return None
    if is_chat:
        return str((choices[0].get("delta") or {}).get("content") or "")
    return str(choices[0].get("text") or "")


async def send_request(
    client: httpx.AsyncClient, endpoint: Endpoint, sample: SampleRequest
) -> RequestOutput:
    """Send one streamed request and time it; failures are recorded, never raised."""
    output = RequestOutput(prompt_len=sample.prompt_len, start_time=time.perf_counter())
    body = request_body(endpoint, sample)
    try:
        async with client.stream("POST", endpoint.url, json=body, headers=endpoint.headers) as r:
            if r.status_code != 200:
                await r.aread()
                output.error = describe_error(r)
                return output
            await _read_stream(r, endpoint.is_chat, output)
    except httpx.HTTPError as exc:
        output.error = f"{type(exc).__name__}: {exc}"
    return output


async def _read_stream(response: httpx.Response, is_chat: bool, output: RequestOutput) -> None:
    last_choice_at = output.start_time
    num_token_chunks = 0
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank lines, comments such as ": keep-alive", event: lines
        data = line[5:].strip()
        if data == "[DONE]":
            break
        now = time.perf_counter()
        chunk = json.loads(data)
        if "error" in chunk:
            output.error = str(chunk["error"].get("message", chunk["error"]))
            return
        if usage := chunk.get("usage"):
            output.output_tokens = int(usage.get("completion_tokens") or 0)
            output.prompt_len = int(usage.get("prompt_tokens") or output.prompt_len)
        text = chunk_text(chunk, is_chat)
        if text is None:
            continue
        last_choice_at = now
        if text:
            _add_token_chunk(output, now)
            num_token_chunks += 1
            output.generated_text += text
    output.latency = last_choice_at - output.start_time
    output.output_tokens = output.output_tokens or num_token_chunks  # a server without usage
    output.success = num_token_chunks > 0
    if not output.success:
        output.error = "The stream carried no text, so there is no time to first token."


def _add_token_chunk(output: RequestOutput, now: float) -> None:
    if output.token_times:
        output.itl.append(now - output.token_times[-1])
    else:
        output.ttft = now - output.start_time
    output.token_times.append(now)

"""Two keys on one real server with the real engine: one key's requests never hurt the other's.

Alice sends every known poison value while Bob streams; Alice gets 400s (or 200s) and every one of
Bob's streams ends normally with [DONE]. The same `x-request-id` sent by both keys at once gives
each key its own complete answer: the server keys everything on ids it makes itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, ServerConfig

MODEL = "tiny-local"
BOB_TOKENS = 200  # long enough that Bob's streams outlive every poison request

# Sent by Alice as JSON text (NaN and Infinity are what Python's json.dumps writes for them).
POISONS: list[str] = [
    '"seed": 1180591620717411303424',  # 2**70
    '"seed": -1180591620717411303424',
    '"seed": 9223372036854775807',
    '"repetition_penalty": 5e-324',
    '"repetition_penalty": Infinity',
    '"repetition_penalty": 100, "presence_penalty": 2, "frequency_penalty": -2',
    '"temperature": 1e-45',
    '"temperature": NaN',
    '"temperature": -0.0',
    '"top_p": 5e-324',
    '"top_k": 1180591620717411303424',
    '"min_p": 1.0',
    '"n": 1180591620717411303424',
    '"max_tokens": 1180591620717411303424',
    '"logprobs": true, "top_logprobs": 1180591620717411303424',
    '"logprobs": true, "top_logprobs": 20',
    '"stop_token_ids": [1180591620717411303424, -1]',
    '"presence_penalty": -Infinity',
]


@dataclass(frozen=True)
class Server:
    base_url: str
    alice: str  # API key secrets
    bob: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("home")
    store = open_key_store(home)
    _, alice = store.create_key(KeySpec(name="alice"))
    _, bob = store.create_key(KeySpec(name="bob"))
    model = ModelConfig(MODEL, source=BUILTIN_CHAT_MODEL)
    engine = EngineConfig(kv_cache_memory_mb=16, max_num_seqs=32)
    config = ServerConfig(models=(model,), home=home, engine=engine)
    app = create_app(config, {MODEL: LocalBackend(model, engine, home)}, build_gatekeeper(config))
    with LiveServer(app) as live:
        yield Server(live.url, alice, bob)


def client(server: Server, secret: str) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {secret}"}
    return httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=300)


def chat_body(content: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        **extra,
    }


@dataclass
class Stream:
    """What a client read from one SSE response."""

    status: int = 0
    request_id: str = ""  # the x-request-id header of the answer
    events: list[str] = field(default_factory=list)  # the data: payloads, [DONE] included

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]

    @property
    def text(self) -> str:
        deltas = [choice["delta"] for chunk in self.chunks for choice in chunk["choices"]]
        return "".join(delta.get("content") or "" for delta in deltas)

    def assert_complete(self, num_tokens: int) -> None:
        assert self.status == 200
        assert self.events[-1] == "[DONE]"
        assert not any("error" in chunk for chunk in self.chunks)
        assert self.chunks[-1]["usage"]["completion_tokens"] == num_tokens
        finish = [c["choices"][0]["finish_reason"] for c in self.chunks if c["choices"]]
        assert finish[-1] == "length"


async def stream_chat(
    http: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    into: Stream | None = None,  # filled as events arrive, for a caller watching the stream
) -> Stream:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    result = into or Stream()
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        result.status, result.request_id = response.status_code, response.headers["x-request-id"]
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                result.events.append(line[6:])
    return result


async def wait_until(condition: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def send_poison(http: httpx.AsyncClient, fields: str, stream: bool) -> httpx.Response:
    content = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "x"}}], '
    content += f'"max_tokens": 4, "stream": {json.dumps(stream)}, {fields}}}'
    headers = {"content-type": "application/json"}
    return await http.post("/v1/chat/completions", content=content, headers=headers)


def assert_refused_or_answered(response: httpx.Response, fields: str) -> None:
    assert response.status_code in (200, 400), (fields, response.text)
    if response.status_code == 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.json()["error"]["type"] == "invalid_request_error"
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n")
        assert '"error"' not in response.text, (fields, response.text)


async def test_poison_values_never_cut_another_keys_streams(server: Server) -> None:
    async with client(server, server.alice) as alice, client(server, server.bob) as bob:
        results = [Stream() for _ in range(4)]
        bob_streams = asyncio.gather(
            *(
                stream_chat(bob, chat_body(f"Story {i}", BOB_TOKENS), into=result)
                for i, result in enumerate(results)
            )
        )
        await wait_until(lambda: all(len(r.events) >= 2 for r in results))  # all generating
        answers = await asyncio.gather(
            *(send_poison(alice, fields, stream) for fields in POISONS for stream in (False, True))
        )
        # The test means something only if Bob's streams were still in flight here.
        assert all(len(r.events) < BOB_TOKENS for r in results)
        await bob_streams
    for (fields, _), answer in zip(
        [(f, s) for f in POISONS for s in (False, True)], answers, strict=True
    ):
        assert_refused_or_answered(answer, fields)
    statuses = {
        fields: answer.status_code for fields, answer in zip(POISONS, answers[::2], strict=True)
    }
    assert statuses['"seed": 1180591620717411303424'] == 400
    assert statuses['"repetition_penalty": 5e-324'] == 400
    assert statuses['"temperature": 1e-45'] == 200  # greedy, as vLLM treats it
    for result in results:
        result.assert_complete(BOB_TOKENS)


async def test_same_x_request_id_from_two_keys_gives_each_its_own_stream(server: Server) -> None:
    bodies = {"alice": chat_body("Alice asks", 40), "bob": chat_body("Bob asks", 40)}
    async with client(server, server.alice) as alice, client(server, server.bob) as bob:
        http = {"alice": alice, "bob": bob}
        alone = {name: await stream_chat(http[name], bodies[name]) for name in http}
        shared = {"x-request-id": "same-id"}
        together = await asyncio.gather(
            *(stream_chat(http[name], bodies[name], shared) for name in http for _ in range(2))
        )
    for name, result in zip(["alice", "alice", "bob", "bob"], together, strict=True):
        result.assert_complete(40)
        assert result.request_id == "same-id"  # echoed as sent
        assert result.text == alone[name].text  # its own generation, not the other key's
    assert alone["alice"].text != alone["bob"].text
    assert len({result.chunks[0]["id"] for result in together}) == 4  # ids the server made
    assert alone["alice"].request_id.startswith("req_")  # no header sent: the server's id


async def test_same_x_request_id_never_touches_another_keys_stored_response(
    server: Server,
) -> None:
    body = {"model": MODEL, "input": "Hello", "max_output_tokens": 4}
    shared = {"x-request-id": "resp-same-id"}
    async with client(server, server.alice) as alice, client(server, server.bob) as bob:
        made = [
            (await http.post("/v1/responses", json=body, headers=shared)) for http in (alice, bob)
        ]
        assert [r.headers["x-request-id"] for r in made] == ["resp-same-id"] * 2
        alice_id, bob_id = (r.json()["id"] for r in made)
        assert alice_id != bob_id
        assert (await alice.get(f"/v1/responses/{alice_id}")).json() == made[0].json()
        assert (await bob.get(f"/v1/responses/{bob_id}")).json() == made[1].json()
        assert (await bob.get(f"/v1/responses/{alice_id}")).status_code == 404

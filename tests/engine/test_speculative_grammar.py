"""Drafts under a grammar: a draft the grammar forbids is rejected, the answer is unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig, SpeculativeConfig
from llmserve.sampling import SamplingParams
from llmserve.types import ChatMessage, GenerateOutput, GenerateRequest, GrammarSpec

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "kind": {"enum": ["cat", "dog", "fish"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
    },
    "required": ["name", "kind", "tags"],
    "additionalProperties": False,
}
SPEC = GrammarSpec("json_schema", json.dumps(SCHEMA))


@pytest.fixture(params=["none", "ngram"])
async def backend(
    llmserve_home: Path, request: pytest.FixtureRequest
) -> AsyncIterator[LocalBackend]:
    speculative = SpeculativeConfig(method=request.param, num_tokens=4)
    local = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL, max_model_len=512),
        EngineConfig(kv_cache_memory_mb=8, num_threads=1, speculative=speculative),
        llmserve_home,
    )
    await local.start()
    yield local
    await local.shutdown()


async def run(
    backend: LocalBackend, request_id: str, prediction: tuple[int, ...] = (), **sampling: object
) -> list[GenerateOutput]:
    prompt = backend.encode(backend.render_chat([ChatMessage("user", "A pet, as JSON")]))
    params = SamplingParams(**{"max_tokens": 120, "temperature": 0.0, **sampling})  # type: ignore[arg-type]
    request = GenerateRequest(
        request_id, tuple(prompt), params, grammar=SPEC, prediction_token_ids=prediction
    )
    return [o async for o in backend.generate(request)]


def text(outputs: list[GenerateOutput]) -> str:
    return "".join(o.text for o in outputs)


async def test_greedy_json_answer_is_the_same_with_right_and_wrong_predictions(
    backend: LocalBackend,
) -> None:
    plain = await run(backend, "plain")
    answer = text(plain)
    jsonschema.validate(json.loads(answer), SCHEMA)
    ids = tuple(t for o in plain for t in o.token_ids)
    right = await run(backend, "right", ids)
    assert text(right) == answer
    assert right[-1].num_accepted_prediction_tokens > len(ids) // 2
    # not JSON at all, then the answer with its middle broken: drafts the grammar forbids
    wrong = tuple(backend.encode("hello there, no JSON here", add_special_tokens=False))
    broken = ids[:5] + wrong + ids[5:]
    for index, prediction in enumerate((wrong, broken)):
        outputs = await run(backend, f"wrong{index}", prediction)
        assert text(outputs) == answer
        assert outputs[-1].num_rejected_prediction_tokens > 0


async def test_sampled_json_with_a_forbidden_prediction_still_matches_the_schema(
    backend: LocalBackend,
) -> None:
    prediction = tuple(backend.encode('{"name": "x", "kind": "horse", "tags": [1, 2]}'))
    for seed in range(4):
        outputs = await run(backend, f"s{seed}", prediction, temperature=1.0, seed=seed)
        jsonschema.validate(json.loads(text(outputs)), SCHEMA)

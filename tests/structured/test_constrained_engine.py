"""Constrained decoding on the built-in random model: the grammar holds for every seed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig
from llmserve.sampling import SamplingParams
from llmserve.structured.grammar import InvalidGrammarError
from llmserve.types import ChatMessage, GenerateOutput, GenerateRequest, GrammarSpec

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "kind": {"enum": ["cat", "dog", "fish"]},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "owner": {
            "type": "object",
            "properties": {
                "score": {"type": "number", "minimum": -1, "maximum": 1},
                "verified": {"type": "boolean"},
            },
            "required": ["score", "verified"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "kind", "age", "tags", "owner"],
    "additionalProperties": False,
}


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


def grammar_request(
    backend: LocalBackend, request_id: str, spec: GrammarSpec, **sampling: object
) -> GenerateRequest:
    prompt = backend.encode(backend.render_chat([ChatMessage("user", "A pet, as JSON")]))
    params = SamplingParams(**{"max_tokens": 200, "temperature": 1.0, **sampling})  # type: ignore[arg-type]
    return GenerateRequest(request_id, tuple(prompt), params, grammar=spec)


async def texts_and_reasons(
    backend: LocalBackend, request: GenerateRequest
) -> list[tuple[str, str | None]]:
    outputs: list[GenerateOutput] = [o async for o in backend.generate(request)]
    by_index: dict[int, list[GenerateOutput]] = {}
    for output in outputs:
        by_index.setdefault(output.index, []).append(output)
    return [
        ("".join(o.text for o in parts), parts[-1].finish_reason)
        for _, parts in sorted(by_index.items())
    ]


async def test_fifty_seeds_all_match_the_schema(backend: LocalBackend) -> None:
    spec = GrammarSpec("json_schema", json.dumps(SCHEMA))
    backend.compile_grammar(spec)
    requests = [grammar_request(backend, f"r{seed}", spec, seed=seed) for seed in range(50)]
    results = await asyncio.gather(*(texts_and_reasons(backend, r) for r in requests))
    assert len(results) == 50  # 50 seeds, run side by side in the engine's batch
    for [(text, reason)] in results:
        jsonschema.validate(json.loads(text), SCHEMA)
        assert reason == "stop"


async def test_greedy_sampling_is_masked_too(backend: LocalBackend) -> None:
    spec = GrammarSpec("regex", "(yes|no), [0-9]{3}")
    backend.compile_grammar(spec)
    [(text, reason)] = await texts_and_reasons(
        backend, grammar_request(backend, "greedy", spec, temperature=0.0)
    )
    assert reason == "stop"
    assert text.startswith(("yes, ", "no, ")) and text[-3:].isdigit()


async def test_choice_gives_one_of_the_choices(backend: LocalBackend) -> None:
    spec = GrammarSpec("choice", json.dumps(["red", "green", "blue"]))
    backend.compile_grammar(spec)
    results = await texts_and_reasons(backend, grammar_request(backend, "c", spec, n=4, seed=1))
    assert {text for text, _ in results} <= {"red", "green", "blue"}
    assert {reason for _, reason in results} == {"stop"}


async def test_max_tokens_cuts_the_json_with_length(backend: LocalBackend) -> None:
    spec = GrammarSpec("json_schema", json.dumps(SCHEMA))
    backend.compile_grammar(spec)
    request = grammar_request(backend, "cut", spec, max_tokens=4, seed=3)
    [(text, reason)] = await texts_and_reasons(backend, request)
    assert reason == "length"
    assert text.startswith('{"')  # the start of the object, cut after 4 tokens
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_a_bad_schema_does_not_compile(backend: LocalBackend) -> None:
    with pytest.raises(InvalidGrammarError, match="foo"):
        backend.compile_grammar(GrammarSpec("json_schema", '{"type": "foo"}'))


def test_llguidance_tokenizer_is_built_with_the_real_vocabulary(home: Path) -> None:
    from transformers import AutoTokenizer

    from llmserve.models.builtin import ensure_tiny_chat
    from llmserve.structured.llguidance_compiler import LlguidanceCompiler

    hf_tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_chat(home))
    assert LlguidanceCompiler.from_hf(hf_tokenizer).vocab_size == len(hf_tokenizer)

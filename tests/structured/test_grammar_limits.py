"""What a grammar may cost: its nesting depth, its compile time, the bytes the cache keeps, and a
grammar that stops mid-generation (issue 18). The tiny model's real tokenizer and llguidance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig
from llmserve.errors import InvalidRequestError
from llmserve.models.tokenizer import ChatTokenizer
from llmserve.sampling import SamplingParams
from llmserve.structured.compile_worker import CompileWorker
from llmserve.structured.grammar import GrammarMatcher, InvalidGrammarError
from llmserve.structured.grammar_cache import GrammarCache
from llmserve.structured.grammar_depth import MAX_GRAMMAR_DEPTH, grammar_depth
from llmserve.structured.llguidance_compiler import LlguidanceCompiler, LlguidanceMatcher
from llmserve.types import ChatMessage, GenerateRequest, GrammarSpec


def chain(depth: int) -> GrammarSpec:
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(depth)}
    defs[f"d{depth}"] = {"type": "string"}
    return GrammarSpec("json_schema", json.dumps({"$ref": "#/$defs/d0", "$defs": defs}))


def lark_chain(depth: int) -> GrammarSpec:
    rules = "\n".join(f"r{i}: r{i + 1}" for i in range(depth))
    return GrammarSpec("lark", f'start: r0\n{rules}\nr{depth}: "x"')


@pytest.fixture(scope="module")
def compiler(tiny_chat_tokenizer: ChatTokenizer) -> LlguidanceCompiler:
    return LlguidanceCompiler.from_hf(tiny_chat_tokenizer.hf, cache_mb=1)


def test_depth_follows_refs_once_and_rule_chains() -> None:
    assert grammar_depth(chain(10)) == 12  # root, d0 ... d10
    recursive = {"$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
        "$ref": "#/$defs/node"}  # fmt: skip
    assert (
        grammar_depth(GrammarSpec("json_schema", json.dumps(recursive))) == 5
    )  # node expanded once
    assert grammar_depth(lark_chain(10)) == 12
    embedded = GrammarSpec("lark", "start: %json " + chain(50).source)
    assert grammar_depth(embedded) == 52
    assert grammar_depth(GrammarSpec("regex", "(" * 500 + ")" * 500)) == 0


@pytest.mark.parametrize("spec", [chain(MAX_GRAMMAR_DEPTH), lark_chain(MAX_GRAMMAR_DEPTH)])
def test_a_grammar_deeper_than_the_limit_is_refused_before_compiling(
    compiler: LlguidanceCompiler, spec: GrammarSpec
) -> None:
    with pytest.raises(InvalidGrammarError, match=r"too deeply nested: .* at most 2048"):
        compiler.compile(spec)


@pytest.mark.parametrize("spec", [chain(MAX_GRAMMAR_DEPTH - 2), lark_chain(3000 - 1000)])
def test_a_grammar_at_the_limit_compiles_on_the_big_stack(
    compiler: LlguidanceCompiler, spec: GrammarSpec
) -> None:
    compiler.compile(spec)  # 8 MB of stack crashed at ~950 of these levels (measured)


def test_a_compile_over_its_time_limit_is_an_error_and_the_worker_goes_on() -> None:
    worker = CompileWorker(num_threads=1)
    with pytest.raises(InvalidGrammarError, match=r"did not compile within 0\.2 s"):
        worker.run(lambda: time.sleep(1.0), timeout_s=0.2)
    assert worker.run(lambda: 42, timeout_s=30) == 42


def test_the_cache_is_bounded_by_bytes_oldest_out() -> None:
    cache: GrammarCache[str] = GrammarCache(max_bytes=100)
    specs = [GrammarSpec("regex", f"a{i}") for i in range(4)]
    assert cache.put(specs[0], "zero", 40) == 0
    assert cache.put(specs[1], "one", 40) == 0
    assert cache.get(specs[0]) == "zero"  # now the newest
    assert cache.put(specs[2], "two", 40) == 40  # one goes
    assert cache.get(specs[1]) is None
    assert cache.num_bytes == 80
    assert cache.put(specs[3], "huge", 101) == 101  # bigger than the bound: not kept
    assert cache.get(specs[3]) is None
    assert cache.num_bytes == 80


def test_the_compiler_measures_what_a_grammar_costs(compiler: LlguidanceCompiler) -> None:
    alternation = "(" + "|".join(f"w{i:05d}x" for i in range(20_000)) + ")"
    compiler.compile(GrammarSpec("regex", alternation))  # ~3 MB compiled: over the 1 MB bound
    assert compiler.cache_bytes <= 2**20
    compiler.compile(GrammarSpec("regex", "[a-z]{1,8}"))
    assert 0 < compiler.cache_bytes <= 2**20


class StoppingMatcher(LlguidanceMatcher):
    """The real matcher, but after `tokens` tokens it refuses the next (as at a parser limit)."""

    def __init__(self, real: GrammarMatcher, tokens: int) -> None:
        assert isinstance(real, LlguidanceMatcher)
        super().__init__(real.inner)
        self.tokens = tokens

    def consume(self, token_id: int) -> bool:
        self.tokens -= 1
        return self.tokens >= 0 and super().consume(token_id)

    @property
    def error_message(self) -> str | None:
        return "parser limit: max_items_in_row exceeded" if self.tokens < 0 else None

    def copy(self) -> GrammarMatcher:
        return self  # one choice


async def test_a_grammar_that_stops_mid_generation_is_the_requests_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL, max_model_len=512),
        EngineConfig(kv_cache_memory_mb=8, max_num_seqs=4, num_threads=1),
        tmp_path,
    )
    await backend.start()
    try:
        grammars = backend._grammars
        assert grammars is not None
        real_new_matcher = grammars.new_matcher
        monkeypatch.setattr(
            grammars, "new_matcher", lambda spec: StoppingMatcher(real_new_matcher(spec), 3)
        )
        prompt = backend.encode(backend.render_chat([ChatMessage("user", "Write letters")]))
        params = SamplingParams(max_tokens=50, temperature=1.0)
        request = GenerateRequest(
            "r1", tuple(prompt), params, grammar=GrammarSpec("regex", "[a-z]{40}")
        )
        backend.compile_grammar(request.grammar)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError) as error:
            async for _ in backend.generate(request):
                pass
        assert error.value.code == "grammar_limit_reached"
        assert "could not go on after 3 tokens: parser limit" in error.value.message
        unconstrained = GenerateRequest("r2", tuple(prompt), SamplingParams(max_tokens=3))
        assert [o async for o in backend.generate(unconstrained)][-1].finish_reason == "length"
    finally:
        await backend.shutdown()


def test_llguidance_matcher_reports_its_error(compiler: LlguidanceCompiler) -> None:
    spec = GrammarSpec("regex", "abc")
    compiler.compile(spec)
    matcher = compiler.new_matcher(spec)
    assert isinstance(matcher, LlguidanceMatcher)
    assert matcher.error_message is None
    assert not matcher.consume(compiler.tokenizer.tokenize_str("zzz")[0])
    assert matcher.error_message

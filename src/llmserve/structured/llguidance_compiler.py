"""`LlguidanceCompiler`: the grammar protocol on llguidance (JSON schema, regex, choice, Lark)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import llguidance

from llmserve.structured.compile_worker import shared_worker
from llmserve.structured.grammar import (
    Bitmask,
    GrammarMatcher,
    InvalidGrammarError,
    StructuredOutputUnsupportedError,
)
from llmserve.structured.grammar_cache import GrammarCache
from llmserve.structured.grammar_depth import check_depth
from llmserve.structured.json_whitespace import json_options, lark_json_options
from llmserve.structured.malloc_meter import allocated_bytes, release_free_memory
from llmserve.types import GrammarSpec

if TYPE_CHECKING:
    from llmserve.config import JsonWhitespace

CACHE_MB = 256  # compiled grammars kept, by measured size (`structured.cache_mb`)
COMPILE_TIMEOUT_S = 10.0  # a compile taking longer is a 400 (`structured.compile_timeout_s`)

logger = logging.getLogger(__name__)


class LlguidanceMatcher:
    """One sequence's place in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher) -> None:
        self.inner = matcher

    def consume(self, token_id: int) -> bool:
        return bool(self.inner.consume_token(token_id))

    @property
    def is_finished(self) -> bool:
        return bool(self.inner.is_stopped())

    @property
    def error_message(self) -> str | None:
        return str(self.inner.get_error()) if self.inner.is_error() else None

    def copy(self) -> GrammarMatcher:
        return LlguidanceMatcher(self.inner.deep_copy())


class LlguidanceCompiler:
    """Compiles specs against one model's tokenizer, with an LRU cache bounded in bytes.

    Every compile is depth-checked, then runs on a big-stack thread with a time limit
    (`grammar_depth.py`, `compile_worker.py`): no grammar can crash the process.
    """

    def __init__(
        self, tokenizer: llguidance.LLTokenizer, *, num_threads: int | None = None,
        cache_mb: float = CACHE_MB, compile_timeout_s: float = COMPILE_TIMEOUT_S,
        special_ids: dict[str, int] | None = None, whitespace: JsonWhitespace = "compact",
    ) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.whitespace = whitespace
        self.compile_timeout_s = compile_timeout_s
        self.special_ids = special_ids or {}  # special token text -> id, for Lark literals
        self._executor = llguidance.LLExecutor(num_threads)
        self._cache: GrammarCache[llguidance.LLMatcher] = GrammarCache(int(cache_mb * 2**20))

    @classmethod
    def from_hf(
        cls, hf_tokenizer: Any, *, num_threads: int | None = None,
        cache_mb: float = CACHE_MB, compile_timeout_s: float = COMPILE_TIMEOUT_S,
        whitespace: JsonWhitespace = "compact",
    ) -> LlguidanceCompiler:  # fmt: skip
        """Build the llguidance tokenizer once per model (about a second for a 150k vocabulary).

        NOTE: `n_vocab` is the tokenizer's real size: llguidance's build is quadratic in tokens
        beyond it (a padded embedding size made it 48.8 s instead of 0.085 s).
        """
        import llguidance.hf

        tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=len(hf_tokenizer))
        added = hf_tokenizer.added_tokens_decoder.items()
        special_ids = {str(token): int(i) for i, token in added if token.special}
        return cls(
            tokenizer, num_threads=num_threads, cache_mb=cache_mb,
            compile_timeout_s=compile_timeout_s, special_ids=special_ids, whitespace=whitespace,
        )  # fmt: skip

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    def compile(self, spec: GrammarSpec) -> None:
        self._compiled(spec)

    def new_matcher(self, spec: GrammarSpec) -> GrammarMatcher:
        return LlguidanceMatcher(self._compiled(spec).deep_copy())

    def fill_bitmask(self, rows: Sequence[tuple[GrammarMatcher, int]], bitmask: Bitmask) -> None:
        matchers = [(cast(LlguidanceMatcher, m).inner, row) for m, row in rows]
        batch, width = bitmask.shape
        if not bitmask.flags["C_CONTIGUOUS"]:
            raise ValueError("the bitmask must be C-contiguous")
        self._executor.unsafe_compute_mask_ptr(matchers, bitmask.ctypes.data, width * 4, batch)

    @property
    def cache_bytes(self) -> int:
        """The measured size of the compiled grammars cached now."""
        return self._cache.num_bytes

    def _compiled(self, spec: GrammarSpec) -> llguidance.LLMatcher:
        cached = self._cache.get(spec)
        if cached is not None:
            return cached
        check_depth(spec)
        text = grammar_text(spec, self.whitespace)
        if spec.kind == "lark":
            text = special_literals(text, self.special_ids)
        matcher, size = shared_worker().run(
            lambda: self._measured_build(text), self.compile_timeout_s
        )
        if matcher.is_error():
            raise InvalidGrammarError(matcher.get_error())
        if self._cache.put(spec, matcher, max(size, len(text))):
            release_free_memory()  # what the evicted grammars held goes back to the system
        return matcher

    def _measured_build(self, text: str) -> tuple[llguidance.LLMatcher, int]:
        """The matcher of `text` and the bytes its build allocated (runs on a compile thread)."""
        before = allocated_bytes()
        matcher = llguidance.LLMatcher(self.tokenizer, text, log_level=0)
        after = allocated_bytes()
        size = after - before if after is not None and before is not None else 0
        return matcher, size


class NoGrammars:
    """Stands in for the compiler of a model whose tokenizer llguidance cannot read."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason

    def compile(self, spec: GrammarSpec) -> None:
        raise StructuredOutputUnsupportedError(self.model, self.reason)


def model_grammars(
    hf_tokenizer: Any, model: str, *, num_threads: int | None = None,
    cache_mb: float = CACHE_MB, compile_timeout_s: float = COMPILE_TIMEOUT_S,
    whitespace: JsonWhitespace = "compact",
) -> LlguidanceCompiler | NoGrammars:  # fmt: skip
    """The model's grammar compiler; `NoGrammars` (and one warning) when llguidance refuses the
    tokenizer (a word-level one: "can't determine decoder type"), so the model still loads.
    """
    try:
        return LlguidanceCompiler.from_hf(
            hf_tokenizer, num_threads=num_threads, cache_mb=cache_mb,
            compile_timeout_s=compile_timeout_s, whitespace=whitespace,
        )  # fmt: skip
    except (ValueError, RuntimeError, TypeError) as exc:
        logger.warning(
            "model %s: structured output disabled: llguidance cannot read its tokenizer (%s)",
            model,
            exc,
        )
        return NoGrammars(model, str(exc))


def grammar_text(spec: GrammarSpec, whitespace: JsonWhitespace = "compact") -> str:
    """llguidance's grammar text for `spec`; InvalidGrammarError when it is not even well-formed."""
    options = json_options(whitespace)
    try:
        if spec.kind == "json_schema":
            return llguidance.LLMatcher.grammar_from_json_schema(spec.source, options)
        if spec.kind == "json_object":
            return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, options)
        if spec.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(spec.source)
        if spec.kind == "choice":
            return llguidance.LLMatcher.grammar_from_lark(choice_lark(json.loads(spec.source)))
        return llguidance.LLMatcher.grammar_from_lark(lark_json_options(spec.source, whitespace))
    except ValueError as exc:
        raise InvalidGrammarError(str(exc)) from None


_LARK_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def special_literals(lark: str, special_ids: dict[str, int]) -> str:
    """`lark` with each special token's text inside a string literal written as its token
    (`"[TOOL_CALLS]["` -> `<[5]> "["`): llguidance forces the special token for such text (its
    tokenizer splits it out) but would not accept it as text. Lines with `%json` are left alone.
    """
    names = [name for name in special_ids if len(name) > 1]
    if not names:
        return lark
    pattern = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))

    def split(literal: re.Match[str]) -> str:
        try:
            value = json.loads(literal.group(0))
        except ValueError:  # a Lark escape JSON does not know: not ours to rewrite
            return literal.group(0)
        if not isinstance(value, str) or not pattern.search(value):
            return literal.group(0)
        parts, last = [], 0
        for found in pattern.finditer(value):
            if found.start() > last:
                parts.append(json.dumps(value[last : found.start()]))
            parts.append(f"<[{special_ids[found.group(0)]}]>")
            last = found.end()
        if last < len(value):
            parts.append(json.dumps(value[last:]))
        return " ".join(parts)

    return "\n".join(
        line if "%json" in line else _LARK_STRING.sub(split, line) for line in lark.split("\n")
    )


def choice_lark(choices: list[str]) -> str:
    """A Lark grammar that matches exactly one of `choices` (JSON strings are Lark literals)."""
    return "start: " + " | ".join(json.dumps(choice) for choice in choices)


def check_grammar(spec: GrammarSpec, timeout_s: float = COMPILE_TIMEOUT_S) -> None:
    """InvalidGrammarError unless `spec` compiles (for backends without a tokenizer)."""
    check_depth(spec)
    text = grammar_text(spec)
    validate = llguidance.LLMatcher.validate_grammar_with_warnings
    is_error, messages = shared_worker().run(lambda: validate(text), timeout_s)
    if is_error:
        raise InvalidGrammarError(messages[0])

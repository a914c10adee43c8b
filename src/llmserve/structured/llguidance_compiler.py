"""`LlguidanceCompiler`: the grammar protocol on llguidance (JSON schema, regex, choice, Lark)."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import llguidance

from llmserve.structured.grammar import (
    Bitmask,
    GrammarMatcher,
    InvalidGrammarError,
    StructuredOutputUnsupportedError,
)
from llmserve.types import GrammarSpec

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# NOTE: compact JSON, as OpenAI writes it; flexible whitespace lets a weak model pad forever.
JSON_OPTIONS: JsonCompileOptions = {"whitespace_flexible": False}
CACHE_SIZE = 256  # compiled grammars kept (schemas repeat: the same app sends the same one)

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

    def copy(self) -> GrammarMatcher:
        return LlguidanceMatcher(self.inner.deep_copy())


class LlguidanceCompiler:
    """Compiles specs against one model's tokenizer, with an LRU cache of compiled grammars."""

    def __init__(
        self,
        tokenizer: llguidance.LLTokenizer,
        *,
        num_threads: int | None = None,
        special_ids: dict[str, int] | None = None,
    ):
        self.tokenizer = tokenizer
        self.special_ids = special_ids or {}  # special token text -> id, for Lark literals
        self._executor = llguidance.LLExecutor(num_threads)
        self._cache: OrderedDict[GrammarSpec, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_hf(cls, hf_tokenizer: Any, *, num_threads: int | None = None) -> LlguidanceCompiler:
        """Build the llguidance tokenizer once per model (about a second for a 150k vocabulary).

        NOTE: `n_vocab` is the tokenizer's real size: llguidance's build is quadratic in tokens
        beyond it (a padded embedding size made it 48.8 s instead of 0.085 s).
        """
        import llguidance.hf

        tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=len(hf_tokenizer))
        added = hf_tokenizer.added_tokens_decoder.items()
        special_ids = {str(token): int(i) for i, token in added if token.special}
        return cls(tokenizer, num_threads=num_threads, special_ids=special_ids)

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

    def _compiled(self, spec: GrammarSpec) -> llguidance.LLMatcher:
        with self._lock:
            if spec in self._cache:
                self._cache.move_to_end(spec)
                return self._cache[spec]
        text = grammar_text(spec)
        if spec.kind == "lark":
            text = special_literals(text, self.special_ids)
        matcher = llguidance.LLMatcher(self.tokenizer, text, log_level=0)
        if matcher.is_error():
            raise InvalidGrammarError(matcher.get_error())
        with self._lock:
            self._cache[spec] = matcher
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return matcher


class NoGrammars:
    """Stands in for the compiler of a model whose tokenizer llguidance cannot read."""

    def __init__(self, model: str, reason: str) -> None:
        self.model = model
        self.reason = reason

    def compile(self, spec: GrammarSpec) -> None:
        raise StructuredOutputUnsupportedError(self.model, self.reason)


def model_grammars(
    hf_tokenizer: Any, model: str, *, num_threads: int | None = None
) -> LlguidanceCompiler | NoGrammars:
    """The model's grammar compiler; `NoGrammars` (and one warning) when llguidance refuses the
    tokenizer (a word-level one: "can't determine decoder type"), so the model still loads.
    """
    try:
        return LlguidanceCompiler.from_hf(hf_tokenizer, num_threads=num_threads)
    except (ValueError, RuntimeError, TypeError) as exc:
        logger.warning(
            "model %s: structured output disabled: llguidance cannot read its tokenizer (%s)",
            model,
            exc,
        )
        return NoGrammars(model, str(exc))


def grammar_text(spec: GrammarSpec) -> str:
    """llguidance's grammar text for `spec`; InvalidGrammarError when it is not even well-formed."""
    try:
        if spec.kind == "json_schema":
            return llguidance.LLMatcher.grammar_from_json_schema(spec.source, JSON_OPTIONS)
        if spec.kind == "json_object":
            return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, JSON_OPTIONS)
        if spec.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(spec.source)
        if spec.kind == "choice":
            return llguidance.LLMatcher.grammar_from_lark(choice_lark(json.loads(spec.source)))
        return llguidance.LLMatcher.grammar_from_lark(spec.source)
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


def check_grammar(spec: GrammarSpec) -> None:
    """InvalidGrammarError unless `spec` compiles (for backends without a tokenizer)."""
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar_text(spec))
    if is_error:
        raise InvalidGrammarError(messages[0])

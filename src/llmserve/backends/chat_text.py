"""Text before the engine, for the chat backends: the tokenizer, the chat template, grammars.

`LocalBackend` (in process) and `RayHandleBackend` (at the ingress, ahead of the replicas) load
them the same way and answer `encode`, `decode`, `render_chat` and `compile_grammar` from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmserve.config import ModelConfig, StructuredConfig
from llmserve.models.tokenizer import ChatTokenizer
from llmserve.structured.llguidance_compiler import LlguidanceCompiler, NoGrammars, model_grammars
from llmserve.types import ChatMessage, GrammarSpec

Grammars = LlguidanceCompiler | NoGrammars


def load_tokenizer(model: ModelConfig, path: str) -> ChatTokenizer:
    """The model's tokenizer and chat template (the configured template, else its own)."""
    return ChatTokenizer.from_pretrained(
        path, chat_template=model.chat_template, revision=model.revision
    )


def load_grammars(
    tokenizer: ChatTokenizer, model: ModelConfig, structured: StructuredConfig,
    num_threads: int | None = None,
) -> Grammars:  # fmt: skip
    """The model's grammar compiler, within the configured cache and time limits."""
    return model_grammars(
        tokenizer.hf, model.name, num_threads=num_threads, cache_mb=structured.cache_mb,
        compile_timeout_s=structured.compile_timeout_s, whitespace=structured.whitespace,
    )  # fmt: skip


class ChatText:
    """The `Backend` members that need only the tokenizer and grammars (set by `start()`)."""

    _tokenizer: ChatTokenizer | None = None
    _grammars: Grammars | None = None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self._chat_tokenizer().encode(text, add_special_tokens=add_special_tokens)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._chat_tokenizer().decode(token_ids)

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        return self._chat_tokenizer().render_chat(messages, tools)

    def compile_grammar(self, spec: GrammarSpec) -> None:
        if self._grammars is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        self._grammars.compile(spec)

    def _chat_tokenizer(self) -> ChatTokenizer:
        if self._tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return self._tokenizer

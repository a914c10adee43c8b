"""`ChatTokenizer`: a Hugging Face tokenizer plus the chat template a served model uses."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmserve.errors import InvalidRequestError
from llmserve.models.chat_templates import resolve_chat_template
from llmserve.models.tool_prompt import (
    hermes_messages,
    template_messages,
    template_supports_tools,
)
from llmserve.types import ChatMessage


class ChatTokenizer:
    """Encodes, decodes and renders chat prompts for one model. Safe to share across threads."""

    def __init__(self, hf_tokenizer: Any, chat_template: str | None) -> None:
        self.hf = hf_tokenizer
        self.chat_template = chat_template
        self._hidden_ids: frozenset[int] | None = None  # None: skip every special token

    @classmethod
    def from_pretrained(
        cls, path: str, *, chat_template: str | None = None, revision: str | None = None
    ) -> ChatTokenizer:
        """Load the tokenizer from a folder or hub id; `chat_template` overrides its own."""
        from transformers import AutoTokenizer

        hf_tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        own_template = getattr(hf_tokenizer, "chat_template", None)
        return cls(hf_tokenizer, resolve_chat_template(chat_template, own_template))

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end generation."""
        eos = self.hf.eos_token_id
        return frozenset() if eos is None else frozenset([int(eos)])

    @functools.cached_property
    def max_chars_per_token(self) -> int:
        """The longest vocabulary entry: no token stands for more characters of text.

        (Byte-level entries spell one character per byte, so they overcount, never under.)
        """
        return max((len(token) for token in self.hf.get_vocab()), default=1)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`."""
        ids = self.hf.encode(text, add_special_tokens=add_special_tokens)
        return [int(i) for i in ids]

    @property
    def special_tokens(self) -> frozenset[str]:
        """The texts of the special tokens (skipped when decoding, unless kept)."""
        return frozenset(str(t) for t in self.hf.convert_ids_to_tokens(sorted(self._special_ids())))

    def keep_special_tokens(self, texts: Iterable[str]) -> None:
        """Decode these special tokens as text (a tool-call format's `[TOOL_CALLS]`), still
        skipping the others. Call once at load, before the tokenizer is shared.
        """
        vocab = self.hf.get_vocab()
        special = self._special_ids()
        kept = {vocab[text] for text in texts if text in vocab} & special
        self._hidden_ids = frozenset(special - kept) if kept else None

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `token_ids`."""
        if skip_special_tokens and self._hidden_ids is not None:
            shown = [i for i in token_ids if i not in self._hidden_ids]
            return str(self.hf.decode(shown, skip_special_tokens=False))
        return str(self.hf.decode(list(token_ids), skip_special_tokens=skip_special_tokens))

    def _special_ids(self) -> set[int]:
        added = self.hf.added_tokens_decoder.items()
        return {int(i) for i, token in added if token.special} | set(self.hf.all_special_ids)

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """The prompt text for `messages`, ending with the assistant's generation prompt.

        `tools` (OpenAI function definitions) are rendered by the template when it can, else in
        llmserve's Hermes-style default (models/tool_prompt.py).
        """
        if self.chat_template is None:
            raise InvalidRequestError(
                "This model has no chat template; set `chat_template` for it in the server config "
                "(a built-in name such as 'llama-2' or 'chatml', or Jinja text), or use "
                "/v1/completions.",
                param="messages",
            )
        from jinja2 import TemplateError

        native = template_supports_tools(self.chat_template)
        conversation: list[Any] = (
            template_messages(messages) if native else hermes_messages(messages, tools)
        )
        try:
            text = self.hf.apply_chat_template(
                conversation,
                tools=list(tools) if native and tools else None,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        except TemplateError as error:
            raise InvalidRequestError(str(error), param="messages") from error
        return str(text)

"""`LocalBackend`: serves one causal LM with llmserve's own continuous-batching engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmserve.config import EngineConfig, ModelConfig, StructuredConfig
from llmserve.engine.cpu import CpuInfo, default_num_threads, detect_cpu, dtype_warning
from llmserve.engine.engine_thread import EngineThread
from llmserve.engine.llm_engine import LLMEngine
from llmserve.engine.model_shape import context_length
from llmserve.engine.quantization import quantize_int8
from llmserve.engine.warmup import verify_engine
from llmserve.errors import OverloadedError, UnsupportedOperationError
from llmserve.models.source import resolve_model_path
from llmserve.models.tokenizer import ChatTokenizer
from llmserve.structured.llguidance_compiler import LlguidanceCompiler, NoGrammars, model_grammars
from llmserve.structured.tool_formats import FORMATS, detect_tool_call_format
from llmserve.types import (
    BackendLoad,
    ChatMessage,
    EmbeddingResult,
    GenerateOutput,
    GenerateRequest,
    GrammarSpec,
    ModelInfo,
)

logger = logging.getLogger(__name__)


class LocalBackend:
    """A transformers causal LM on this machine, stepped by a background engine thread."""

    def __init__(
        self, model_config: ModelConfig, engine_config: EngineConfig, home: Path,
        structured: StructuredConfig | None = None,
    ) -> None:  # fmt: skip
        self._model_config = model_config
        self._structured = structured or StructuredConfig()
        self._engine_config = engine_config
        self._home = home
        self._info: ModelInfo | None = None
        self._tokenizer: ChatTokenizer | None = None
        self._thread: EngineThread | None = None
        self._grammars: LlguidanceCompiler | NoGrammars | None = None

    @property
    def info(self) -> ModelInfo:
        """The served model (reads its config on first use if not started yet)."""
        if self._info is None:
            from transformers import AutoConfig

            path = resolve_model_path(self._model_config, self._home)
            config = AutoConfig.from_pretrained(path, revision=self._model_config.revision)
            self._info = self._model_info(config)
        return self._info

    async def start(self) -> None:
        """Load weights and tokenizer off the event loop, then start the engine thread."""
        if self._thread is None:
            self._thread = await asyncio.to_thread(self._load)
            self._thread.start()

    async def shutdown(self) -> None:
        """Abort every request in flight and stop the engine thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.stop)

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
            raise RuntimeError("LocalBackend.start() was not called")
        self._grammars.compile(spec)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        """Stream outputs of `request`; closing early aborts it and frees its KV blocks."""
        if self._thread is None:
            raise OverloadedError(f"model {self.info.name} is not loaded (starting or stopped)")
        stream = self._thread.generate(request)
        try:
            async for output in stream:
                yield output
        finally:
            await stream.aclose()

    async def abort(self, request_id: str) -> None:
        if self._thread is not None:
            await self._thread.abort(request_id)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        raise UnsupportedOperationError(
            f"model {self.info.name} is a chat model, not an embedding model"
        )

    def load(self) -> BackendLoad:
        return self._thread.load() if self._thread is not None else BackendLoad(0, 0)

    def _chat_tokenizer(self) -> ChatTokenizer:
        if self._tokenizer is None:
            raise RuntimeError("LocalBackend.start() was not called")
        return self._tokenizer

    def _model_info(self, config: Any) -> ModelInfo:
        max_len = self._model_config.max_model_len or context_length(config.get_text_config())
        return ModelInfo(
            name=self._model_config.name,
            kind="chat",
            max_model_len=max_len,
            source=self._model_config.source,
            max_chars_per_token=self._tokenizer.max_chars_per_token if self._tokenizer else None,
            tool_call_format=self._tool_call_format(),
        )

    def _tool_call_format(self) -> str:
        """The configured `tool_call_parser`, else the one the template and tokenizer reveal."""
        if self._model_config.tool_call_parser:
            return self._model_config.tool_call_parser
        if self._tokenizer is None:
            return detect_tool_call_format(None)
        tokenizer = self._tokenizer
        return detect_tool_call_format(tokenizer.chat_template, tokenizer.special_tokens)

    def _load(self) -> EngineThread:
        import torch

        cpu = detect_cpu()
        num_threads = self._engine_config.num_threads or default_num_threads(cpu)
        torch.set_num_threads(num_threads)
        path = resolve_model_path(self._model_config, self._home)
        model = self._load_model(path, cpu)
        self._tokenizer = ChatTokenizer.from_pretrained(
            path,
            chat_template=self._model_config.chat_template,
            revision=self._model_config.revision,
        )
        self._info = self._model_info(model.config)
        self._tokenizer.keep_special_tokens(FORMATS[self._info.tool_call_format].tokens)
        self._grammars = model_grammars(
            self._tokenizer.hf, self._model_config.name,
            num_threads=self._engine_config.num_threads, cache_mb=self._structured.cache_mb,
            compile_timeout_s=self._structured.compile_timeout_s,
            whitespace=self._structured.whitespace,
        )  # fmt: skip
        engine = LLMEngine(
            model,
            self._tokenizer,
            self._engine_config,
            max_model_len=self._info.max_model_len,
            eos_token_ids=_eos_token_ids(model, self._tokenizer),
            grammars=self._grammars if isinstance(self._grammars, LlguidanceCompiler) else None,
        )
        verify_engine(engine.runner, max_model_len=self._info.max_model_len)
        return EngineThread(engine, num_threads=num_threads)

    def _load_model(self, path: str, cpu: CpuInfo) -> Any:
        """The weights in the configured dtype, Linear layers quantized when asked."""
        import torch
        from transformers import AutoModelForCausalLM

        config = self._engine_config
        warning = dtype_warning(config.dtype, cpu)
        if warning:
            logger.warning("model %s: %s", self._model_config.name, warning)
        model = AutoModelForCausalLM.from_pretrained(
            path, revision=self._model_config.revision, dtype=getattr(torch, config.dtype)
        )  # from_pretrained returns the model in eval mode
        if config.quantization == "int8":
            quantize_int8(model, reduce_range=not cpu.has_int8_dot)
        return model


def _eos_token_ids(model: Any, tokenizer: ChatTokenizer) -> frozenset[int]:
    """EOS ids from the generation config and the tokenizer."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = {eos} if isinstance(eos, int) else set(eos or ())
    return frozenset(ids) | tokenizer.eos_token_ids

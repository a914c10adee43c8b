"""EncoderBackend: an embedding model (BERT-like) behind the `Backend` protocol.

Loads with `AutoModel` / `AutoTokenizer` from a folder or hub id, pools and normalises as the
folder's sentence-transformers config says, and runs the model on one worker thread so the
event loop stays free while a batch is encoded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from llmserve.backends.base import Canary
from llmserve.backends.encoder_config import PoolingConfig, read_pooling_config
from llmserve.config import ModelConfig
from llmserve.errors import ContextLengthExceededError, UnsupportedOperationError
from llmserve.models.source import resolve_model_path
from llmserve.types import (
    BackendLoad,
    ChatMessage,
    EmbeddingResult,
    GenerateOutput,
    GenerateRequest,
    GrammarSpec,
    ModelInfo,
)

DEFAULT_BATCH_SIZE = 32
_FALLBACK_MAX_LEN = 512


def _local_folder(source: str, revision: str | None) -> Path:
    """`source` as a folder; a hub id is fetched (or found in the HF cache) first."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, revision=revision))


def pool(hidden: Any, mask: Any, config: PoolingConfig) -> Any:
    """Sentence vectors from token states `hidden` [batch, seq, dim] and `mask` [batch, seq]."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if config.mode == "cls":
        vectors = hidden[:, 0]
    elif config.mode == "max":
        vectors = hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    else:
        counts = weights.sum(dim=1).clamp(min=1e-9)
        summed = (hidden * weights).sum(dim=1)
        vectors = summed / (counts.sqrt() if config.mode == "mean_sqrt_len" else counts)
    if config.normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return vectors


class EncoderBackend:
    """Serves one embedding model; `generate` and `render_chat` are unsupported."""

    canary: Canary | None = None  # a plain model: no variants

    def __init__(
        self,
        name: str,
        source: str,
        *,
        max_model_len: int | None = None,
        revision: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._name = name
        self._source = source
        self._revision = revision
        self._max_model_len_setting = max_model_len
        self._batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._pooling = PoolingConfig()
        self._max_model_len = max_model_len or _FALLBACK_MAX_LEN
        # NOTE: a fast tokenizer is not safe to use from two threads at once ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._num_running = 0

    @classmethod
    def from_config(cls, model: ModelConfig, home: Path) -> EncoderBackend:
        """The backend for a configured embedding model (hub id, folder or built-in name)."""
        source = resolve_model_path(model, home)
        return cls(model.name, source, max_model_len=model.max_model_len, revision=model.revision)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self._name,
            kind="embedding",
            max_model_len=self._max_model_len,
            source=self._source,
        )

    async def start(self) -> None:
        """Load tokenizer and weights (on a worker thread)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = _local_folder(self._source, self._revision)
        self._pooling = read_pooling_config(folder)
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self._model = AutoModel.from_pretrained(str(folder)).eval()
        limits = [
            self._max_model_len_setting,
            self._pooling.max_seq_length,
            getattr(self._model.config, "max_position_embeddings", None),
        ]
        self._max_model_len = min((v for v in limits if v is not None), default=_FALLBACK_MAX_LEN)

    async def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        with self._tokenizer_lock:
            ids = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return list(ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        with self._tokenizer_lock:
            return str(self._tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        raise UnsupportedOperationError(f"`{self._name}` is an embedding model; it cannot chat.")

    def compile_grammar(self, spec: GrammarSpec) -> None:
        raise UnsupportedOperationError(
            f"`{self._name}` is an embedding model; it cannot generate."
        )

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        raise UnsupportedOperationError(
            f"`{self._name}` is an embedding model; it cannot generate text."
        )

    async def abort(self, request_id: str) -> None:
        return None  # embeddings are not generated step by step: nothing to abort

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """One vector per text, in order; raises ContextLengthExceededError for a long input."""
        if self._executor is None:
            raise RuntimeError("EncoderBackend.start() was not called")
        self._num_running += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._embed_sync, list(texts))
        finally:
            self._num_running -= 1

    def _embed_sync(self, texts: list[str]) -> EmbeddingResult:
        token_ids = [self.encode(text) for text in texts]
        for index, ids in enumerate(token_ids):
            if len(ids) > self._max_model_len:
                raise ContextLengthExceededError(
                    f"This model's maximum context length is {self._max_model_len} tokens, "
                    f"however you requested {len(ids)} tokens in input {index}. "
                    "Please reduce the length of the input.",
                    param="input",
                )
        vectors: list[list[float]] = []
        for start in range(0, len(token_ids), self._batch_size):
            vectors.extend(self._embed_batch(token_ids[start : start + self._batch_size]))
        return EmbeddingResult(vectors=vectors, num_prompt_tokens=sum(map(len, token_ids)))

    def _embed_batch(self, token_ids: list[list[int]]) -> list[list[float]]:
        import torch

        longest = max(len(ids) for ids in token_ids)
        pad_id = self._tokenizer.pad_token_id or 0
        input_ids = torch.full((len(token_ids), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(token_ids), longest), dtype=torch.long)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        with torch.inference_mode():
            hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            vectors = pool(hidden, mask, self._pooling)
        return [[float(x) for x in row] for row in vectors.tolist()]

    def load(self) -> BackendLoad:
        return BackendLoad(num_running=self._num_running, num_waiting=0)

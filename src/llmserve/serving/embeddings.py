"""Embeddings without HTTP: strings in, an `EmbeddingList` of float or base64 vectors out."""

from __future__ import annotations

from dataclasses import dataclass

from llmserve.errors import InvalidRequestError
from llmserve.serving.context import ServingContext
from llmserve.serving.schemas_embeddings import EmbeddingRequest, encode_vector
from llmserve.serving.usage import UsageMeter
from llmserve.serving.wire import EmbeddingList


@dataclass
class EmbeddingJob:
    """A validated embeddings request; `run()` embeds every input in one backend call."""

    context: ServingContext
    texts: list[str]
    encoding_format: str
    meter: UsageMeter

    @property
    def estimated_tokens(self) -> int:
        """What admission charges up front (the backend counts exactly once it has run)."""
        return sum(len(text) // 4 + 2 for text in self.texts)

    async def run(self) -> EmbeddingList:
        """The vectors, in input order, with the tokens the model read."""
        result = await self.context.backend.embed(self.texts)
        self.meter.prompt_tokens = result.num_prompt_tokens
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": encode_vector(vector, self.encoding_format),
                }
                for index, vector in enumerate(result.vectors)
            ],
            "model": self.context.model,
            "usage": {
                "prompt_tokens": result.num_prompt_tokens,
                "total_tokens": result.num_prompt_tokens,
            },
        }


def prepare_embeddings(context: ServingContext, body: EmbeddingRequest) -> EmbeddingJob:
    """Validate an embeddings request (400s here, before admission); nothing runs yet."""
    if body.dimensions is not None:
        raise InvalidRequestError(
            "`dimensions` is not supported by this model.", param="dimensions"
        )
    return EmbeddingJob(context, body.texts(), body.encoding_format, UsageMeter(context.model))

"""The `random` dataset: prompts of random words with lengths drawn as `vllm bench serve` does.

Lengths are uniform in `[len * (1 - ratio), len * (1 + ratio)]`. The client has no tokenizer, so a
prompt is first made of words; when the server has vLLM's `/tokenize` and `/detokenize` (llmserve
and vLLM do) it is cut to exactly its length in the server's tokens. Other servers get about one
word per token; the report counts what the server's usage says in every case.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

_VOCABULARY = (
    "time person year way day thing man world life hand part child eye woman place work week "
    "case point number group problem fact house water room money story month lot right study "
    "book word business issue side kind head service friend father power hour game line end "
    "member law car city community name president team minute idea kid body information back "
    "parent face others level office door health art war history party result change morning "
    "reason research girl guy moment air teacher force education river garden music window"
)
WORDS = tuple(_VOCABULARY.split())
EXTRA_WORDS = 1.5  # words drawn per wanted token before cutting to the server's token count


@dataclass(frozen=True)
class SampleRequest:
    """One request of the run: its prompt, the prompt's length in tokens, and max_tokens."""

    prompt: str
    prompt_len: int
    output_len: int


def sample_lengths(
    mean: int, range_ratio: float, count: int, rng: np.random.Generator
) -> list[int]:
    """`count` lengths, uniform over `[floor(mean*(1-ratio)), ceil(mean*(1+ratio))]`, at least 1."""
    low = max(1, math.floor(mean * (1 - range_ratio)))
    high = max(low, math.ceil(mean * (1 + range_ratio)))
    return [int(n) for n in rng.integers(low, high + 1, size=count)]


def random_words(count: int, rng: np.random.Generator) -> str:
    """`count` words drawn from a fixed vocabulary."""
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=count))


def random_requests(
    num_prompts: int, input_len: int, output_len: int, range_ratio: float, seed: int
) -> list[SampleRequest]:
    """The run's requests, with word prompts (one word per wanted token, for now)."""
    rng = np.random.default_rng(seed)
    input_lens = sample_lengths(input_len, range_ratio, num_prompts, rng)
    output_lens = sample_lengths(output_len, range_ratio, num_prompts, rng)
    prompt_rng = np.random.default_rng(seed + 1)
    return [
        SampleRequest(random_words(math.ceil(n * EXTRA_WORDS), prompt_rng), n, out)
        for n, out in zip(input_lens, output_lens, strict=True)
    ]


async def fit_to_server_tokens(
    client: httpx.AsyncClient, root: str, model: str, requests: list[SampleRequest]
) -> tuple[list[SampleRequest], bool]:
    """Prompts cut to exactly `prompt_len` server tokens, and whether the server could do it.

    Without vLLM's /tokenize (llama.cpp has another shape), prompts keep one word per token.
    """
    limit = asyncio.Semaphore(16)

    async def fit(request: SampleRequest) -> SampleRequest:
        async with limit:
            tokens = await _post(client, f"{root}/tokenize", model, prompt=request.prompt)
            ids = tokens["tokens"][: request.prompt_len]
            text = await _post(client, f"{root}/detokenize", model, tokens=ids)
        return SampleRequest(str(text["prompt"]), len(ids), request.output_len)

    try:
        return list(await asyncio.gather(*(fit(r) for r in requests))), True
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        cut = [_first_words(r) for r in requests]
        return cut, False


def _first_words(request: SampleRequest) -> SampleRequest:
    words = request.prompt.split()[: request.prompt_len]
    return SampleRequest(" ".join(words), request.prompt_len, request.output_len)


async def _post(client: httpx.AsyncClient, url: str, model: str, **fields: object) -> Any:
    body = {"model": model, "add_special_tokens": False, **fields}
    response = await client.post(url, json=body)
    response.raise_for_status()
    return response.json()

"""Sampling parameters from the OpenAI request fields."""

from __future__ import annotations

from llmserve.errors import InvalidRequestError
from llmserve.sampling import SamplingParams
from llmserve.serving.schemas import SamplingFields


def sampling_params(body: SamplingFields, max_tokens: int, logprobs: int | None) -> SamplingParams:
    """The backend's sampling parameters for a request body."""
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=max(body.top_k, 0),  # -1 (vLLM's "disabled") and 0 both disable top-k
            min_p=body.min_p,
            seed=body.seed,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty,
            stop=body.stop_strings,
            stop_token_ids=tuple(body.stop_token_ids),
            ignore_eos=body.ignore_eos,
            n=body.n,
            logprobs=logprobs,
        )
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None

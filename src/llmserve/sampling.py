"""Sampling parameters: how one request picks its tokens, and the bounds every value must meet."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Sampling bounds (OpenAI's ranges where it has one; vLLM's temperature rule).
SEED_RANGE = (-(2**63), 2**63 - 1)  # a signed 64-bit integer, as OpenAI and vLLM accept
MAX_PENALTY = 2.0  # presence_penalty and frequency_penalty lie in [-2, 2]
REPETITION_PENALTY_RANGE = (0.01, 100.0)  # 1 disables it; the bounds keep logits / penalty finite
MAX_N = 128
MAX_LOGPROBS = 20  # OpenAI's top_logprobs limit
GREEDY_TEMPERATURE = 1e-5  # below it, sampling is argmax
MIN_SAMPLING_TEMPERATURE = 1e-2  # smaller ones overflow float32 logits, so they are raised to it


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one request. Defaults follow the OpenAI API."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None  # None: no logprobs; k >= 0: the sampled token plus k top ones

    def __post_init__(self) -> None:
        # NOTE: every value is bounded so the sampler's float32 arithmetic stays finite; one
        # request's parameters must never be able to fail a batch it shares with others.
        _check_int("max_tokens", self.max_tokens, 1)
        _check_number("temperature", self.temperature, 0.0, math.inf)
        _check_number("top_p", self.top_p, 0.0, 1.0, low_is_open=True)
        _check_int("top_k", self.top_k, 0)
        _check_number("min_p", self.min_p, 0.0, 1.0)
        _check_number("presence_penalty", self.presence_penalty, -MAX_PENALTY, MAX_PENALTY)
        _check_number("frequency_penalty", self.frequency_penalty, -MAX_PENALTY, MAX_PENALTY)
        _check_number("repetition_penalty", self.repetition_penalty, *REPETITION_PENALTY_RANGE)
        _check_int("n", self.n, 1, MAX_N)
        if self.seed is not None:
            _check_int("seed", self.seed, *SEED_RANGE)
        if self.logprobs is not None:
            _check_int("logprobs", self.logprobs, 0, MAX_LOGPROBS)

    @property
    def is_greedy(self) -> bool:
        """True when sampling reduces to argmax (vLLM's rule: temperature below 1e-5 is 0)."""
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def sampling_temperature(self) -> float:
        """The temperature the sampler divides by: at least MIN_SAMPLING_TEMPERATURE (as vLLM)."""
        return max(float(self.temperature), MIN_SAMPLING_TEMPERATURE)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """ValueError unless `value` is an int (not a bool) in [low, high]."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and low <= value
        and (high is None or value <= high)
    ):
        return
    bounds = f">= {low}" if high is None else f"between {low} and {high}"
    raise ValueError(f"{name} must be an integer {bounds}")


def _check_number(
    name: str, value: object, low: float, high: float, *, low_is_open: bool = False
) -> None:
    """ValueError unless `value` is a finite real number in [low, high] ((low, high] if open)."""
    number = _as_float(value)
    above_low = number > low if low_is_open else number >= low
    if not (math.isfinite(number) and above_low and number <= high):
        raise ValueError(f"{name} must be a finite number {_interval(low, high, low_is_open)}")


def _as_float(value: object) -> float:
    """`value` as a float; NaN when it is no real number (a bool, a string) or too big for one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _interval(low: float, high: float, low_is_open: bool) -> str:
    if high == math.inf:
        return f">= {low:g}"
    return f"in ({low:g}, {high:g}]" if low_is_open else f"between {low:g} and {high:g}"

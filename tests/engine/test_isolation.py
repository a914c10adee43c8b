"""One request's bad values fail that request only; the rest of the batch goes on unchanged."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmserve.engine.llm_engine import DuplicateRequestError, LLMEngine
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateOutput, GenerateRequest

from .conftest import greedy, make_engine, output_ids

PROMPT = (5, 17, 42, 99, 7, 3)
HEALTHY = [GenerateRequest(f"healthy-{i}", PROMPT[i:], greedy(12), tenant="b") for i in range(3)]

# Values validation refuses, forced in as a caller that bypasses it would send them.
UNSAMPLEABLE: list[dict[str, Any]] = [
    {"seed": 1.5},
    {"repetition_penalty": 5e-324},
    {"temperature": math.nan},
    {"top_k": 2.5},
    {"presence_penalty": math.inf},  # fails at the second token, the first one with a penalty
    {"frequency_penalty": -math.inf},
    {"frequency_penalty": math.nan},
]
# Extreme values that stay sampleable: the request completes normally.
SAMPLEABLE: list[dict[str, Any]] = [
    {"temperature": 1e-45},  # below vLLM's 1e-5: greedy
    {"temperature": 1e-4},  # raised to 1e-2, as vLLM does
    {"temperature": 1e300},
    {"temperature": math.inf},  # every logit becomes 0: uniform
    {"top_p": math.nan},  # NaN < 1 is false: no top-p
    {"min_p": math.nan},
    {"repetition_penalty": math.inf},
    {"top_p": 5e-324},
    {"top_k": 2**70},
    {"logprobs": 10**9},
    {"seed": 2**70},  # refused by validation; the sampler wraps it into torch's range anyway
    {"seed": -(2**63)},
    {"seed": 2**63 - 1},
    {"stop_token_ids": (2**70, -1)},
    {"presence_penalty": 2.0, "frequency_penalty": -2.0, "repetition_penalty": 100.0},
    {"repetition_penalty": 0.01},
]


def forced(max_tokens: int, **values: Any) -> SamplingParams:
    """Sampling params with `values` written past validation."""
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=7)
    for name, value in values.items():
        object.__setattr__(params, name, value)
    return params


def run(
    engine: LLMEngine, requests: list[GenerateRequest]
) -> tuple[dict[str, list[GenerateOutput]], dict[str, Exception]]:
    """Step until idle: every request's outputs, and the requests that failed."""
    for request in requests:
        engine.add_request(request)
    outputs: dict[str, list[GenerateOutput]] = {}
    failures: dict[str, Exception] = {}
    while engine.has_unfinished_requests():
        for output in engine.step():
            outputs.setdefault(output.request_id, []).append(output)
        failures |= engine.pop_failures()
    return outputs, failures


@pytest.fixture(scope="module")
def lone_ids(llama: Any) -> dict[str, list[int]]:
    """What each healthy request generates with nobody beside it."""
    return {
        r.request_id: output_ids(run(make_engine(llama), [r])[0][r.request_id]) for r in HEALTHY
    }


def assert_healthy_unchanged(
    outputs: dict[str, list[GenerateOutput]], lone_ids: dict[str, list[int]]
) -> None:
    for request_id, expected in lone_ids.items():
        assert output_ids(outputs[request_id]) == expected
        assert outputs[request_id][-1].finish_reason == "length"


@pytest.mark.parametrize("values", UNSAMPLEABLE, ids=str)
def test_unsampleable_values_fail_only_their_request(
    llama: Any, lone_ids: dict[str, list[int]], values: dict[str, Any]
) -> None:
    poison = GenerateRequest("poison", PROMPT, forced(12, **values), tenant="a")
    outputs, failures = run(make_engine(llama), [HEALTHY[0], poison, *HEALTHY[1:]])
    assert list(failures) == ["poison"]
    assert all(output.finish_reason is None for output in outputs.get("poison", []))
    assert_healthy_unchanged(outputs, lone_ids)


@pytest.mark.parametrize("values", SAMPLEABLE, ids=str)
def test_extreme_but_sampleable_values_complete(
    llama: Any, lone_ids: dict[str, list[int]], values: dict[str, Any]
) -> None:
    extreme = GenerateRequest("extreme", PROMPT, forced(12, **values), tenant="a")
    outputs, failures = run(make_engine(llama), [extreme, *HEALTHY])
    assert failures == {}
    assert outputs["extreme"][-1].num_output_tokens == 12
    assert_healthy_unchanged(outputs, lone_ids)


def test_nan_logits_of_one_row_fail_only_that_request(
    llama: Any, lone_ids: dict[str, list[int]]
) -> None:
    # NOTE: the test corrupts the poison's KV memory by hand; with prefix caching healthy-0, whose
    # prompt is the same, would rightly reuse those blocks. What is tested is decode padding.
    engine = make_engine(llama, enable_prefix_caching=False)
    poison = GenerateRequest("poison", PROMPT, greedy(12), tenant="a")
    engine.add_request(poison)
    engine.step()  # the prompt is in the KV cache
    (seq,) = engine.scheduler.running
    assert seq.block_ids[0] == 0  # it holds slot 0, which once padded every decode batch
    layers = engine.runner.kv.layers.values()
    for cache in [t for layer in layers for t in (layer.keys, layer.values)]:  # its KV turns NaN
        for block_id in seq.block_ids:
            cache[block_id * 4 : (block_id + 1) * 4].fill_(math.nan)
    outputs, failures = run(engine, HEALTHY)  # prompts of 3 lengths: padded decode batches
    assert list(failures) == ["poison"]
    assert_healthy_unchanged(outputs, lone_ids)


def test_a_forward_that_fails_on_one_sequence_retries_the_others_alone(
    llama: Any, lone_ids: dict[str, list[int]]
) -> None:
    engine = make_engine(llama)
    engine.add_request(GenerateRequest("poison", PROMPT, greedy(12), tenant="a"))
    engine.step()
    (seq,) = engine.scheduler.running
    seq.token_ids[-1] = engine.vocab_size + 5  # a corrupt id: the embedding lookup raises
    outputs, failures = run(engine, HEALTHY)
    assert list(failures) == ["poison"]
    assert isinstance(failures["poison"], IndexError)
    assert_healthy_unchanged(outputs, lone_ids)
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_failed_request_frees_its_blocks(llama: Any) -> None:
    engine = make_engine(llama)
    poison = GenerateRequest("poison", PROMPT, forced(50, temperature=math.nan))
    _, failures = run(engine, [poison])
    assert list(failures) == ["poison"]
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
    assert not engine.has_unfinished_requests()


def test_prompt_ids_outside_the_vocabulary_are_refused(llama: Any) -> None:
    engine = make_engine(llama)
    for prompt in [(1, engine.vocab_size), (-1, 2)]:
        with pytest.raises(ValueError, match=r"prompt token ids must lie in \[0, 300\)"):
            engine.add_request(GenerateRequest("bad", prompt, greedy(2)))
    assert not engine.has_unfinished_requests()


def test_a_duplicate_request_id_is_refused_and_the_first_goes_on(
    llama: Any, lone_ids: dict[str, list[int]]
) -> None:
    engine = make_engine(llama)
    first = HEALTHY[0]
    engine.add_request(first)
    engine.step()
    with pytest.raises(DuplicateRequestError, match="'healthy-0' is already running"):
        engine.add_request(GenerateRequest(first.request_id, (1, 2, 3), greedy(12)))
    outputs, failures = run(engine, [])
    assert failures == {}
    assert [t for o in outputs[first.request_id] for t in o.token_ids] == lone_ids["healthy-0"][1:]

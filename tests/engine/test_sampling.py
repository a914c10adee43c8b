from __future__ import annotations

import random
from typing import Any

from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest

from .conftest import greedy, make_engine, output_ids, run_all

PROMPT = (5, 17, 42, 99, 3, 250, 7)


def crowd(num: int) -> list[GenerateRequest]:
    rng = random.Random(7)
    return [
        GenerateRequest(
            f"crowd{i}",
            tuple(rng.randrange(1, 300) for _ in range(rng.randrange(2, 30))),
            SamplingParams(max_tokens=6, temperature=1.0, seed=i),
        )
        for i in range(num)
    ]


def test_same_seed_gives_same_text_alone_and_in_a_crowded_batch(llama: Any) -> None:
    params = SamplingParams(max_tokens=12, temperature=0.8, seed=1234)
    alone = run_all(make_engine(llama), [GenerateRequest("x", PROMPT, params)])
    crowded = run_all(make_engine(llama), [*crowd(6), GenerateRequest("x", PROMPT, params)])
    assert output_ids(alone[("x", 0)]) == output_ids(crowded[("x", 0)])
    assert "".join(o.text for o in alone[("x", 0)]) == "".join(o.text for o in crowded[("x", 0)])


def test_truncating_filters_that_keep_one_token_reduce_to_greedy(llama: Any) -> None:
    expected = output_ids(
        run_all(make_engine(llama), [GenerateRequest("g", PROMPT, greedy(10))])[("g", 0)]
    )
    variants = [
        SamplingParams(max_tokens=10, top_k=1, seed=3),
        SamplingParams(max_tokens=10, min_p=1.0, seed=3),
        SamplingParams(max_tokens=10, top_p=1e-6, seed=3),
    ]
    requests = [GenerateRequest(f"v{i}", PROMPT, p) for i, p in enumerate(variants)]
    results = run_all(make_engine(llama), requests)
    for i in range(len(variants)):
        assert output_ids(results[(f"v{i}", 0)]) == expected


def test_presence_penalty_stops_repeats(llama: Any) -> None:
    plain = output_ids(
        run_all(make_engine(llama), [GenerateRequest("p", PROMPT, greedy(40))])[("p", 0)]
    )
    assert len(set(plain)) < len(plain)  # the tiny random model loops without a penalty
    penalized = greedy(40, presence_penalty=2.0)
    ids = output_ids(
        run_all(make_engine(llama), [GenerateRequest("p", PROMPT, penalized)])[("p", 0)]
    )
    assert len(set(ids)) == len(ids)


def test_n_choices_each_finish_with_their_index(llama: Any) -> None:
    params = SamplingParams(max_tokens=5, temperature=1.0, seed=5, n=3)
    results = run_all(make_engine(llama), [GenerateRequest("n", PROMPT, params)])
    assert sorted(results) == [("n", 0), ("n", 1), ("n", 2)]
    for outputs in results.values():
        assert outputs[-1].finish_reason == "length"
        assert outputs[-1].num_output_tokens == 5


def test_logprobs_report_the_sampled_token_and_top_alternatives(llama: Any) -> None:
    results = run_all(make_engine(llama), [GenerateRequest("l", PROMPT, greedy(4, logprobs=3))])
    for output in results[("l", 0)]:
        assert output.logprobs is not None
        (entry,) = output.logprobs
        assert entry.token_id == output.token_ids[0]
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token_id == entry.token_id  # greedy picks the top token
        assert entry.logprob == entry.top_logprobs[0].logprob <= 0.0


def test_stop_token_ids_and_max_tokens_set_finish_reason(llama: Any) -> None:
    free = output_ids(
        run_all(make_engine(llama), [GenerateRequest("s", PROMPT, greedy(8))])[("s", 0)]
    )
    stopped = run_all(
        make_engine(llama), [GenerateRequest("s", PROMPT, greedy(8, stop_token_ids=(free[2],)))]
    )
    outputs = stopped[("s", 0)]
    assert output_ids(outputs) == free[:3]
    assert outputs[-1].finish_reason == "stop"

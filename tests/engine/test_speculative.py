"""Draft tokens (a prediction, n-gram lookup) change how fast tokens come, never which ones."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from llmserve.config import SpeculativeConfig
from llmserve.engine.drafting import PredictionDrafter, ngram_drafts
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateOutput, GenerateRequest

from .conftest import greedy, make_engine, output_ids, run_all

NGRAM = SpeculativeConfig(method="ngram", num_tokens=4, max_running=8)
PROMPT = tuple([5, 6, 7, 8, 9, 10, 11, 12] * 3)


def prompts(num: int, seed: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    return [tuple(rng.randrange(1, 300) for _ in range(rng.randrange(3, 30))) for _ in range(num)]


def answers(model: Any, batch: list[tuple[int, ...]], max_tokens: int, **kw: Any) -> list[Any]:
    engine = make_engine(model)
    requests = [GenerateRequest(f"r{i}", p, greedy(max_tokens, **kw)) for i, p in enumerate(batch)]
    results = run_all(engine, requests)
    return [results[(f"r{i}", 0)] for i in range(len(batch))]


def half_wrong(ids: list[int]) -> tuple[int, ...]:
    """Every other stretch of 5 tokens replaced: the prediction is half right."""
    return tuple(t if (i // 5) % 2 == 0 else (t + 1) % 300 for i, t in enumerate(ids))


def test_prediction_equal_to_the_answer_is_all_accepted_in_few_steps(llama: Any) -> None:
    (expected,) = answers(llama, [PROMPT], 40)
    engine = make_engine(llama)
    request = GenerateRequest(
        "r", PROMPT, greedy(40), prediction_token_ids=tuple(output_ids(expected))
    )
    outputs = run_all(engine, [request])[("r", 0)]
    assert output_ids(outputs) == output_ids(expected)
    assert "".join(o.text for o in outputs) == "".join(o.text for o in expected)
    assert len(outputs) <= 4  # 40 tokens in 4 steps: the first, then 16 drafts + 1 per step
    # each step keeps its accepted drafts plus the one token the model picks after them
    assert outputs[-1].num_accepted_prediction_tokens == 40 - len(outputs)
    assert outputs[-1].num_rejected_prediction_tokens == 0
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_half_wrong_prediction_gives_the_same_answer_and_counts_rejections(llama: Any) -> None:
    (expected,) = answers(llama, [PROMPT], 40)
    prediction = half_wrong(output_ids(expected))
    engine = make_engine(llama)
    request = GenerateRequest("r", PROMPT, greedy(40), prediction_token_ids=prediction)
    outputs = run_all(engine, [request])[("r", 0)]
    assert output_ids(outputs) == output_ids(expected)
    assert outputs[-1].num_accepted_prediction_tokens > 0
    assert outputs[-1].num_rejected_prediction_tokens > 0
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


@pytest.mark.parametrize("wrong", [False, True])
def test_predictions_under_preemption_match_the_plain_answers(llama: Any, wrong: bool) -> None:
    batch = prompts(5, seed=3)
    expected = [output_ids(o) for o in answers(llama, batch, 24)]
    # 16 blocks of 4 tokens: not enough for five sequences and their drafts at once
    engine = make_engine(llama, num_blocks=16, max_num_batched_tokens=64)
    requests = [
        GenerateRequest(
            f"r{i}", p, greedy(24), prediction_token_ids=half_wrong(e) if wrong else tuple(e)
        )
        for i, (p, e) in enumerate(zip(batch, expected, strict=True))
    ]
    results = run_all(engine, requests)
    assert [output_ids(results[(f"r{i}", 0)]) for i in range(5)] == expected
    assert engine.scheduler.num_preemptions > 0
    assert engine.block_manager.num_free_blocks == 16


def test_ngram_speculation_matches_plain_greedy_with_n_choices(llama: Any) -> None:
    batch = [PROMPT, *prompts(2, seed=5)]
    expected = [output_ids(o) for o in answers(llama, batch, 40)]
    engine = make_engine(llama, speculative=NGRAM)
    requests = [GenerateRequest(f"r{i}", p, greedy(40, n=2)) for i, p in enumerate(batch)]
    results = run_all(engine, requests)
    for i, want in enumerate(expected):
        assert [output_ids(results[(f"r{i}", k)]) for k in range(2)] == [want, want]
    num_steps = len(results[("r0", 0)])
    assert num_steps < 40  # the repeating answer was drafted from itself
    assert results[("r0", 0)][-1].num_accepted_prediction_tokens == 0  # no prediction was sent


def test_ngram_speculation_stays_off_above_max_running(llama: Any) -> None:
    config = SpeculativeConfig(method="ngram", num_tokens=4, max_running=1)
    engine = make_engine(llama, speculative=config)
    requests = [GenerateRequest(f"r{i}", PROMPT, greedy(30)) for i in range(2)]
    results = run_all(engine, requests)
    assert all(len(outputs) == 30 for outputs in results.values())  # one token a step


def test_stop_string_inside_the_prediction_stops_there(llama: Any) -> None:
    (full,) = answers(llama, [PROMPT], 40)
    text = "".join(o.text for o in full)
    stop = text[20:23]
    (expected,) = answers(llama, [PROMPT], 40, stop=(stop,))
    engine = make_engine(llama)
    params = greedy(40, stop=(stop,))
    request = GenerateRequest("r", PROMPT, params, prediction_token_ids=tuple(output_ids(full)))
    outputs = run_all(engine, [request])[("r", 0)]
    assert "".join(o.text for o in outputs) == "".join(o.text for o in expected)
    assert stop not in "".join(o.text for o in outputs)
    assert outputs[-1].finish_reason == "stop"
    assert outputs[-1].num_output_tokens == expected[-1].num_output_tokens


def test_logprobs_with_drafts_equal_those_without(llama: Any) -> None:
    (expected,) = answers(llama, [PROMPT], 20, logprobs=2)
    engine = make_engine(llama)
    params = greedy(20, logprobs=2)
    prediction = half_wrong(output_ids(expected))
    request = GenerateRequest("r", PROMPT, params, prediction_token_ids=prediction)
    outputs = run_all(engine, [request])[("r", 0)]
    got = [lp for o in outputs for lp in o.logprobs or ()]
    want = [lp for o in expected for lp in o.logprobs or ()]
    assert [lp.token_id for lp in got] == [lp.token_id for lp in want]
    assert [lp.logprob for lp in got] == pytest.approx([lp.logprob for lp in want], abs=1e-4)
    assert [[t.token_id for t in lp.top_logprobs] for lp in got] == [
        [t.token_id for t in lp.top_logprobs] for lp in want
    ]


def test_max_tokens_is_never_passed_by_accepted_drafts(llama: Any) -> None:
    (expected,) = answers(llama, [PROMPT], 40)
    engine = make_engine(llama)
    request = GenerateRequest(
        "r", PROMPT, greedy(7), prediction_token_ids=tuple(output_ids(expected))
    )
    outputs = run_all(engine, [request])[("r", 0)]
    assert output_ids(outputs) == output_ids(expected)[:7]
    assert outputs[-1].finish_reason == "length"


def test_prediction_drafter_resyncs_after_an_edit() -> None:
    drafter = PredictionDrafter((1, 2, 3, 4, 5, 6, 7, 8))
    assert drafter.propose([], 3) == [1, 2, 3]
    assert drafter.propose([1, 2], 3) == [3, 4, 5]
    assert drafter.propose([1, 2, 9], 3) == []  # 9 is nowhere in the prediction
    assert drafter.propose([1, 2, 9, 5], 3) == [6, 7, 8]  # back on track after the edit
    assert drafter.propose([1, 2, 9, 5, 6, 7, 8], 3) == []


def test_ngram_drafts_follow_the_last_earlier_occurrence() -> None:
    assert ngram_drafts([1, 2, 3, 4, 9, 2, 3], 2) == [4, 9]
    assert ngram_drafts([1, 2, 3, 7, 8, 1, 2, 3, 5, 6, 2, 3], 3) == [5, 6, 2]
    assert ngram_drafts([1, 2, 3], 2) == []
    assert ngram_drafts([1, 2, 5, 2], 2) == []  # one token matching is too often chance
    assert ngram_drafts([7] * 20, 8) == [7] * 8  # a repeating stretch: a full draft


def first_tokens(
    model: Any, prediction: tuple[int, ...], first_seed: int
) -> tuple[list[tuple[int, ...]], list[GenerateOutput]]:
    """3000 samples of the first three tokens (30 requests of n=100, seeds far apart)."""
    engine = make_engine(model, max_num_seqs=256, max_num_batched_tokens=8192, num_blocks=4096)
    params = [
        SamplingParams(max_tokens=3, temperature=0.04, seed=first_seed + r * 1000, n=100)
        for r in range(30)
    ]
    requests = [
        GenerateRequest(f"r{r}", PROMPT, p, prediction_token_ids=prediction)
        for r, p in enumerate(params)
    ]
    results = run_all(engine, requests)
    return [tuple(output_ids(outputs)) for outputs in results.values()], [
        outputs[-1] for outputs in results.values()
    ]


def test_sampled_distribution_is_unchanged_by_drafts(llama: Any) -> None:
    """A chi-square test of the first three tokens' joint law, with and without drafts.

    At temperature 0.04 the tiny model's next token has a few likely values; tokens 2 and 3 are
    verified drafts whenever the first one followed the prediction.
    """
    (likeliest,) = answers(llama, [PROMPT], 3)
    # independent samples: no seed of one run is used by the other
    plain, _ = first_tokens(llama, (), 0)
    # the greedy answer is the likeliest path: its drafts are often accepted, often rejected
    drafted, finals = first_tokens(llama, tuple(output_ids(likeliest)), 10**6)
    assert sum(o.num_accepted_prediction_tokens for o in finals) > 300
    assert sum(o.num_rejected_prediction_tokens for o in finals) > 150
    counts: dict[tuple[int, ...], list[int]] = {}
    for column, samples in enumerate((plain, drafted)):
        for sample in samples:
            counts.setdefault(sample, [0, 0])[column] += 1
    common = [c for c in counts.values() if sum(c) >= 20]
    rare = [sum(c[k] for c in counts.values() if sum(c) < 20) for k in (0, 1)]
    table = [*common, rare] if sum(rare) else common
    assert len(table) >= 5
    statistic, df = chi_square(table)
    assert statistic < chi_square_critical(df)  # not rejected at the 0.1 % level


def chi_square(table: list[list[int]]) -> tuple[float, int]:
    """Pearson's statistic of a two-column contingency table, and its degrees of freedom."""
    columns = [sum(row[k] for row in table) for k in (0, 1)]
    total = sum(columns)
    statistic = 0.0
    for row in table:
        for k in (0, 1):
            expected = sum(row) * columns[k] / total
            statistic += (row[k] - expected) ** 2 / expected
    return statistic, len(table) - 1


def chi_square_critical(df: int, z: float = 3.0902) -> float:
    """The chi-square quantile at the normal quantile `z` (3.09: 0.1 %), by Wilson-Hilferty."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3

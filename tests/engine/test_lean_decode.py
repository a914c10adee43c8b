"""The lean decode step computes what the operator-by-operator int8 path computes, in one call."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from llmserve.config import EngineConfig
from llmserve.engine import decode_kernel
from llmserve.engine.lean_decode import LeanStep
from llmserve.engine.quantization import _LINEAR_DYNAMIC, Int8Linear, quantize_int8
from llmserve.engine.scheduler import ScheduledChunk, SchedulerOutput
from llmserve.engine.sequence import Sequence
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateRequest
from tests.models.families import WINDOW, family_model

from .conftest import greedy, make_engine, output_ids, run_all

LLAMA_LIKE = ["llama", "mistral", "qwen2", "qwen3"]  # qwen2: q/k/v biases; qwen3: q/k norms
KV_DTYPES = ["auto", "bfloat16", "int8"]


@pytest.fixture(scope="module")
def kernels() -> Any:
    decode_kernel.configure("kernel")
    module = decode_kernel.kernel()
    assert module is not None, "the compiled kernels did not build"
    return module


def int8_family(family: str, reduce_range: bool = False, **overrides: Any) -> Any:
    model = family_model(family, **overrides)
    quantize_int8(model, reduce_range=reduce_range)
    return model


def packed(kernels: Any, layer: Int8Linear) -> Any:
    weight, bias = torch.ops.quantized.linear_unpack(layer._packed)
    scales = weight.q_per_channel_scales().float()
    return kernels.pack_int8(weight.int_repr(), scales, torch.empty(0) if bias is None else bias)


@pytest.mark.parametrize("reduce_range", [False, True])
@pytest.mark.parametrize(
    ("n", "k", "bias"), [(960, 576, False), (576, 1536, True), (100, 70, True)]
)
def test_a_packed_matrix_equals_torchs_dynamic_int8_linear_bit_for_bit(
    kernels: Any, n: int, k: int, bias: bool, reduce_range: bool
) -> None:
    torch.manual_seed(n + k)
    layer = Int8Linear.from_linear(
        torch.nn.Linear(k, n, bias=bias), per_channel=True, reduce_range=reduce_range
    )
    matrix = packed(kernels, layer)
    inputs = [torch.randn(1, k) * 10.0**e for e in (-6, -2, 0, 2)]  # -6: fbgemm's smallest scale
    inputs += [torch.randn(1, k).abs(), -torch.randn(1, k).abs(), torch.zeros(1, k)]
    inputs += [torch.randn(5, k), torch.randn(17, k) * torch.rand(17, 1)]  # rows share one scale
    for x in inputs:
        expected = _LINEAR_DYNAMIC(x, layer._packed, reduce_range)
        got = kernels.int8_linear(matrix, x, 127 if reduce_range else 255)
        assert torch.equal(got, expected)


def decode_logits(
    model: Any,
    kv_cache_dtype: str,
    lean: bool,
    steps: int,
    prompt_len: int = 3 * WINDOW,
    drafts: int = 6,
) -> torch.Tensor:
    """Logits of `steps` one-token decodes after a prompt (by default 3x the sliding window),
    then of one token with `drafts` drafts (a verify step of 1 + drafts rows)."""
    runner = make_engine(model, lean_decode="on", kv_cache_dtype=kv_cache_dtype).runner
    assert runner.lean is not None
    if not lean:
        runner.lean = None
    tokens = [(7 * i + 3) % 300 for i in range(prompt_len + steps + 1 + drafts)]
    seq = Sequence("s", 0, tokens[:prompt_len], prompt_len, SamplingParams(max_tokens=steps))
    seq.block_ids = list(range(-(-len(tokens) // runner.block_size)))
    runner.execute(SchedulerOutput([ScheduledChunk(seq, 0, prompt_len)]))
    rows = []
    for position in range(prompt_len, prompt_len + steps + 1):
        seq.token_ids.append(tokens[position])
        verify = position == prompt_len + steps
        draft_ids = tuple(tokens[position + 1 :]) if verify else ()
        rows.append(runner.execute(SchedulerOutput([ScheduledChunk(seq, position, 1, draft_ids)])))
    assert rows[-1].shape[0] == 1 + drafts
    return torch.cat(rows)


@pytest.mark.parametrize("kv_cache_dtype", KV_DTYPES)
@pytest.mark.parametrize("family", LLAMA_LIKE)
def test_lean_logits_equal_the_operator_path_past_the_window(
    family: str, kv_cache_dtype: str
) -> None:
    model = int8_family(family)
    expected = decode_logits(model, kv_cache_dtype, lean=False, steps=8)
    got = decode_logits(model, kv_cache_dtype, lean=True, steps=8)
    # float caches: the last bit of a sum of squares or an exp; int8 caches: a key row may round
    # to a neighbouring int8 step when its last bit differs
    tolerance = 2e-2 if kv_cache_dtype == "int8" else 1e-5
    assert float((got - expected).abs().max()) <= tolerance * float(expected.abs().max())
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


# Head sizes of 64 and 128 take the vector attention, the one that splits a lone sequence's
# context (from 256 attended positions) between threads; Mistral's window (280 of the 300-odd
# positions) makes the parts cover only the window.
SPLIT_MODELS: dict[str, dict[str, int]] = {
    "llama": dict(head_dim=64),
    "mistral": dict(head_dim=64, sliding_window=280),
    "qwen3": dict(head_dim=128),
}


@pytest.mark.parametrize("kv_cache_dtype", KV_DTYPES)
@pytest.mark.parametrize("family", list(SPLIT_MODELS))
def test_a_lone_sequence_split_between_threads_attends_as_the_operator_path(
    family: str, kv_cache_dtype: str
) -> None:
    model = int8_family(family, **SPLIT_MODELS[family], max_position_embeddings=512)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # one sequence, two threads: each takes part of its positions
    try:
        # 4 one-token decodes after a 300-token prompt
        expected = decode_logits(model, kv_cache_dtype, False, steps=3, prompt_len=300, drafts=0)
        got = decode_logits(model, kv_cache_dtype, True, steps=3, prompt_len=300, drafts=0)
    finally:
        torch.set_num_threads(threads)
    # both paths split the context the same way and combine its parts with the same code: the
    # float caches agree as closely as with one thread's walk
    tolerance = 2e-2 if kv_cache_dtype == "int8" else 1e-5
    assert float((got - expected).abs().max()) <= tolerance * float(expected.abs().max())
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def batch_logits(model: Any, lean: bool) -> torch.Tensor:
    """Two sequences of different lengths decoding side by side for 6 steps, their own blocks."""
    runner = make_engine(model, lean_decode="on").runner
    if not lean:
        runner.lean = None
    seqs = []
    for index, length in enumerate((3 * WINDOW, 5)):
        tokens = [(5 * i + 11 * index) % 300 for i in range(length)]
        seq = Sequence(f"s{index}", 0, tokens, length, SamplingParams(max_tokens=6))
        seq.block_ids = [20 * index + b for b in range(10)]
        runner.execute(SchedulerOutput([ScheduledChunk(seq, 0, length)]))
        seqs.append(seq)
    rows = []
    for step in range(6):
        for seq in seqs:
            seq.token_ids.append((step * 7 + len(seq.token_ids)) % 300)
        chunks = [ScheduledChunk(seq, len(seq.token_ids) - 1, 1) for seq in seqs]
        rows.append(runner.execute(SchedulerOutput(chunks)))
    assert rows[0].shape[0] == 2
    return torch.cat(rows)


@pytest.mark.parametrize("family", ["mistral", "qwen3"])
def test_a_batch_of_sequences_attends_each_to_its_own_context(family: str) -> None:
    model = int8_family(family)
    expected, got = batch_logits(model, lean=False), batch_logits(model, lean=True)
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


class CountingLean:
    """Wraps a runner's lean step and counts the steps it took."""

    def __init__(self, lean: LeanStep) -> None:
        self.lean, self.calls = lean, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lean, name)

    def run(self, *args: Any) -> torch.Tensor:
        self.calls += 1
        return self.lean.run(*args)


def generate(model: Any, lean: str, requests: list[GenerateRequest], **config: Any) -> Any:
    engine = make_engine(model, lean_decode=lean, **config)
    counter = None
    if engine.runner.lean is not None:
        counter = CountingLean(engine.runner.lean)
        engine.runner.lean = counter  # type: ignore[assignment]
    results = run_all(engine, requests)
    return results, (counter.calls if counter else 0)


@pytest.mark.parametrize("family", LLAMA_LIKE)
def test_greedy_answers_are_the_same_with_the_lean_step(family: str) -> None:
    model = int8_family(family)
    prompt = tuple((11 * i) % 250 + 3 for i in range(3 * WINDOW + 1))
    requests = [GenerateRequest("q", prompt, greedy(24, stop=["never appears"]))]
    expected, off_calls = generate(model, "off", requests)
    got, lean_calls = generate(model, "auto", requests)
    assert output_ids(got[("q", 0)]) == output_ids(expected[("q", 0)])
    assert got[("q", 0)][-1].text == expected[("q", 0)][-1].text
    assert (off_calls, lean_calls) == (0, 23)  # every decode after the prompt's first token


def test_predictions_and_batches_are_verified_by_the_lean_step() -> None:
    model = int8_family("llama")
    prompt = tuple((5 * i) % 200 + 7 for i in range(20))
    plain, _ = generate(model, "off", [GenerateRequest("p", prompt, greedy(40))])
    answer = output_ids(plain[("p", 0)])
    edited = answer[:10] + [(t + 1) % 300 for t in answer[10:15]] + answer[15:]
    requests = [
        GenerateRequest("e", prompt, greedy(40), prediction_token_ids=tuple(edited)),
        GenerateRequest("two", prompt[:9], greedy(30, n=2)),
        GenerateRequest("long", prompt * 2, greedy(35, stop=["never appears"])),
    ]
    expected, _ = generate(model, "off", requests)
    got, lean_calls = generate(model, "auto", requests)
    for key in (("e", 0), ("two", 0), ("two", 1), ("long", 0)):
        assert output_ids(got[key]) == output_ids(expected[key]), key
        assert got[key][-1].text == expected[key][-1].text, key
    assert output_ids(got[("e", 0)]) == answer
    last, last_expected = got[("e", 0)][-1], expected[("e", 0)][-1]
    assert last.num_accepted_prediction_tokens == last_expected.num_accepted_prediction_tokens
    assert last.num_rejected_prediction_tokens == last_expected.num_rejected_prediction_tokens > 0
    # the steps after the three prefills are decode steps: at most 34 of them (the longest
    # answer), fewer while the prediction's drafts hold
    assert 0 < lean_calls <= 34


def test_reduced_range_activations_give_the_same_answers() -> None:
    model = int8_family("qwen2", reduce_range=True)  # CPUs without VNNI: 7-bit activations
    prompt = tuple((3 * i) % 280 + 1 for i in range(12))
    requests = [GenerateRequest("r", prompt, greedy(12))]
    expected, _ = generate(model, "off", requests)
    got, lean_calls = generate(model, "on", requests)
    assert output_ids(got[("r", 0)]) == output_ids(expected[("r", 0)])
    assert lean_calls == 11


def test_models_it_cannot_run_keep_the_operator_path(caplog: pytest.LogCaptureFixture) -> None:
    float32 = family_model("llama")  # not quantized
    gemma = int8_family("gemma")  # (1 + weight) norms, gelu: not Llama-like
    with caplog.at_level(logging.WARNING, logger="llmserve.engine.lean_decode"):
        assert make_engine(float32, lean_decode="on").runner.lean is None
        assert make_engine(gemma, lean_decode="on").runner.lean is None
        assert make_engine(int8_family("llama"), lean_decode="off").runner.lean is None
    assert [r.getMessage() for r in caplog.records] == [
        "lean decode step not used: it runs int8 weights with float32 activations only",
        "lean decode step not used: GemmaForCausalLM has no Llama-like decoder layers",
    ]
    prompt = tuple(range(5, 25))
    expected, _ = generate(gemma, "off", [GenerateRequest("g", prompt, greedy(6))])
    got, lean_calls = generate(gemma, "auto", [GenerateRequest("g", prompt, greedy(6))])
    assert output_ids(got[("g", 0)]) == output_ids(expected[("g", 0)]) and lean_calls == 0


def test_an_unknown_setting_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="lean_decode must be one of auto, on, off, not 'fast'"):
        EngineConfig(lean_decode="fast")  # type: ignore[arg-type]

"""int8 weights: every Linear swapped, outputs close to float32, the engine path still exact."""

from __future__ import annotations

import copy
import gc
import weakref
from typing import Any

import torch

from llmserve.engine.quantization import Int8Linear, quantize_int8
from llmserve.types import GenerateRequest

from .conftest import greedy, hf_greedy, make_engine, output_ids, run_all, tiny_model


def int8_model(arch: str = "llama", **kw: bool) -> Any:
    model = tiny_model(arch)
    quantize_int8(model, reduce_range=kw.get("reduce_range", False))
    return model


def test_every_linear_becomes_int8_and_nothing_else_changes() -> None:
    model = tiny_model("qwen2")  # q/k/v projections with biases
    num_linear = sum(type(m) is torch.nn.Linear for m in model.modules())
    embedding = model.get_input_embeddings().weight.clone()
    assert quantize_int8(model, reduce_range=False) == num_linear
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == num_linear
    assert torch.equal(model.get_input_embeddings().weight, embedding)


@torch.inference_mode()
def test_next_token_distributions_stay_close_to_float32() -> None:
    reference = tiny_model("llama")
    ids = torch.tensor([[(37 * i) % 290 + 5 for i in range(128)]])
    ref = torch.log_softmax(reference(ids).logits[0], dim=-1)
    for reduce_range in (False, True):
        quantized = copy.deepcopy(reference)
        quantize_int8(quantized, reduce_range=reduce_range)
        out = torch.log_softmax(quantized(ids).logits[0], dim=-1)
        kl = (ref.exp() * (ref - out)).sum(-1).mean().item()
        agreement = (ref.argmax(-1) == out.argmax(-1)).float().mean().item()
        assert kl < 1e-3
        assert agreement > 0.8


def test_engine_greedy_on_int8_weights_equals_generate_on_them() -> None:
    model = int8_model("llama")
    engine = make_engine(model)
    prompt = [(11 * i) % 250 + 3 for i in range(21)]
    results = run_all(engine, [GenerateRequest("q", tuple(prompt), greedy(10))])
    assert output_ids(results[("q", 0)]) == hf_greedy(model, prompt, 10)


def test_quantization_keeps_no_float32_linear_weight_alive() -> None:
    model = tiny_model("llama")
    weights = [weakref.ref(m.weight) for m in model.modules() if type(m) is torch.nn.Linear]
    quantize_int8(model, reduce_range=False)
    gc.collect()
    assert [ref() for ref in weights] == [None] * len(weights)

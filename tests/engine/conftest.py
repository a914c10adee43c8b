"""Tiny random causal LMs (Llama, Mistral, Qwen2) built with transformers' own classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
)

from llmserve.config import EngineConfig
from llmserve.engine.llm_engine import LLMEngine
from llmserve.sampling import SamplingParams
from llmserve.types import GenerateOutput, GenerateRequest

TINY = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)
CONFIGS: dict[str, type[PretrainedConfig]] = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
}


def tiny_model(arch: str = "llama") -> Any:
    torch.manual_seed(0)
    config = CONFIGS[arch](**TINY)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


@dataclass
class ByteDecoder:
    """Ids below 256 are raw bytes; the rest decode to a fixed word. Splits multi-byte chars."""

    def decode(self, token_ids: Sequence[int]) -> str:
        data = bytearray()
        for i in token_ids:
            data += bytes([i]) if i < 256 else f"<{i}>".encode()
        return data.decode("utf-8", errors="replace")


def make_engine(model: Any, num_blocks: int | None = None, **config: Any) -> LLMEngine:
    engine_config = EngineConfig(**{"kv_cache_memory_mb": 8, "block_size": 4, **config})
    return LLMEngine(
        model,
        ByteDecoder(),
        engine_config,
        max_model_len=256,
        eos_token_ids=frozenset(),
        num_blocks=num_blocks,
    )


def greedy(max_tokens: int, **kw: Any) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **kw)


def run_all(
    engine: LLMEngine, requests: list[GenerateRequest]
) -> dict[tuple[str, int], list[GenerateOutput]]:
    for request in requests:
        engine.add_request(request)
    results: dict[tuple[str, int], list[GenerateOutput]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            results.setdefault((out.request_id, out.index), []).append(out)
    return results


def output_ids(outputs: list[GenerateOutput]) -> list[int]:
    return [t for o in outputs for t in o.token_ids]


def hf_greedy(model: Any, prompt: Sequence[int], max_tokens: int) -> list[int]:
    ids = torch.tensor([list(prompt)])
    out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, min_new_tokens=max_tokens)
    return list(out[0, len(prompt) :].tolist())


@pytest.fixture(scope="module")
def llama() -> Any:
    return tiny_model("llama")

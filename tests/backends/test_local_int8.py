"""LocalBackend with `quantization: int8` serves the int8 model the engine tests check."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from llmserve.backends.local import LocalBackend
from llmserve.config import BUILTIN_CHAT_MODEL, EngineConfig, ModelConfig
from llmserve.engine.cpu import detect_cpu
from llmserve.engine.quantization import quantize_int8
from llmserve.models.builtin import ensure_tiny_chat
from llmserve.sampling import SamplingParams
from llmserve.types import ChatMessage, GenerateRequest


async def test_int8_backend_greedy_equals_generate_on_the_int8_model(tmp_path: Path) -> None:
    backend = LocalBackend(
        ModelConfig(name="tiny", source=BUILTIN_CHAT_MODEL, max_model_len=256),
        EngineConfig(kv_cache_memory_mb=4, quantization="int8", num_threads=1),
        tmp_path,
    )
    await backend.start()
    try:
        prompt = backend.encode(backend.render_chat([ChatMessage("user", "Hello there")]))
        params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
        outputs = [o async for o in backend.generate(GenerateRequest("a", tuple(prompt), params))]
    finally:
        await backend.shutdown()
    reference = AutoModelForCausalLM.from_pretrained(ensure_tiny_chat(tmp_path))
    quantize_int8(reference, reduce_range=not detect_cpu().has_int8_dot)
    expected = reference.generate(
        torch.tensor([prompt]), max_new_tokens=12, min_new_tokens=12, do_sample=False
    )[0, len(prompt) :]
    assert [t for o in outputs for t in o.token_ids] == expected.tolist()

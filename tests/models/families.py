"""Tiny random models, one per decoder family, built from transformers' own config classes.

Window 8 on every sliding family, so the test prompts (3x the window) cross it.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM

WINDOW = 8
COMMON: dict[str, Any] = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=256,
)
GQA = dict(COMMON, num_key_value_heads=2)
TWO_TYPES = ["sliding_attention", "full_attention"]
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", GQA),
    "mistral": ("MistralConfig", dict(GQA, sliding_window=WINDOW)),
    "mixtral": (
        "MixtralConfig",
        dict(GQA, sliding_window=WINDOW, num_local_experts=4, num_experts_per_tok=2),
    ),
    "qwen2": ("Qwen2Config", GQA),
    "qwen3": ("Qwen3Config", dict(GQA, head_dim=16)),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        dict(GQA, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    ),
    "gemma": ("GemmaConfig", dict(GQA, head_dim=16)),
    "gemma2": (
        "Gemma2Config",
        dict(GQA, head_dim=16, sliding_window=WINDOW, layer_types=TWO_TYPES),
    ),
    "gemma3_text": (
        "Gemma3TextConfig",
        dict(
            GQA,
            head_dim=16,
            num_hidden_layers=6,
            sliding_window=WINDOW,
            layer_types=["sliding_attention"] * 5 + ["full_attention"],
        ),
    ),
    "gpt_oss": (
        "GptOssConfig",
        dict(
            GQA,
            head_dim=16,
            sliding_window=WINDOW,
            num_local_experts=4,
            num_experts_per_tok=2,
            layer_types=TWO_TYPES,
        ),
    ),
    "phi3": ("Phi3Config", dict(GQA, pad_token_id=0)),
    "granite": (
        "GraniteConfig",
        dict(
            GQA,
            attention_multiplier=0.5,
            embedding_multiplier=2.0,
            residual_multiplier=0.5,
            logits_scaling=4.0,
        ),
    ),
    "stablelm": ("StableLmConfig", dict(GQA, partial_rotary_factor=0.25)),
    "gpt2": ("GPT2Config", dict(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=256)),
    "gpt_neox": (
        "GPTNeoXConfig",
        dict(COMMON, rotary_pct=0.25, use_parallel_residual=True),
    ),
    "olmo2": ("Olmo2Config", GQA),
    "cohere": ("CohereConfig", GQA),
    "starcoder2": ("Starcoder2Config", dict(GQA, sliding_window=WINDOW)),
}


def family_config(family: str, **overrides: Any) -> Any:
    """The family's tiny config; `overrides` replace or add config fields."""
    class_name, kwargs = FAMILIES[family]
    return getattr(transformers, class_name)(**{**kwargs, **overrides})


def family_model(family: str, **overrides: Any) -> Any:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        family_config(family, **overrides), dtype=torch.float32
    )
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()

"""`max_model_len` defaults to the model's own context length, never its sliding window."""

from __future__ import annotations

from transformers import Gemma2Config, Gemma3TextConfig, GPT2Config, GptOssConfig, MistralConfig

from llmserve.engine.model_shape import context_length, kv_geometry


def test_mistral_7b_v01_is_32k_not_its_4k_window() -> None:
    config = MistralConfig(max_position_embeddings=32768, sliding_window=4096)
    assert context_length(config) == 32768


def test_gemma2_is_8k_not_its_4k_window() -> None:
    config = Gemma2Config(max_position_embeddings=8192, sliding_window=4096)
    assert context_length(config) == 8192


def test_gemma3_is_its_full_context_not_its_1k_window() -> None:
    config = Gemma3TextConfig(max_position_embeddings=32768, sliding_window=1024)
    assert context_length(config) == 32768


def test_gpt_oss_is_131k_not_its_128_window() -> None:
    config = GptOssConfig()  # the shipped defaults are gpt-oss-20b's
    assert (config.sliding_window, context_length(config)) == (128, 131072)


def test_gpt2_without_gqa_fields() -> None:
    config = GPT2Config()
    assert context_length(config) == 1024
    geometry = kv_geometry(config)
    assert (geometry.num_layers, geometry.num_kv_heads, geometry.head_dim) == (12, 12, 64)

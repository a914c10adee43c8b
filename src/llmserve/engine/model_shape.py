"""What the engine reads from a model's config: its context length and its KV-cache geometry.

Fields differ between families (GPT-2 has no `num_key_value_heads`, Gemma sets `head_dim` apart
from `hidden_size`): every read here has the fallback transformers itself uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KVGeometry:
    """Layers, KV heads and head size, for the cache's memory budget."""

    num_layers: int
    num_kv_heads: int
    head_dim: int

    def __post_init__(self) -> None:
        if min(self.num_layers, self.num_kv_heads, self.head_dim) < 1:
            raise ValueError(f"a KV geometry needs positive sizes, not {self}")


def kv_geometry(config: Any) -> KVGeometry:
    """The KV geometry of a transformers text config; no GQA field means one KV head per head."""
    heads = int(config.num_attention_heads)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return KVGeometry(int(config.num_hidden_layers), int(kv_heads), int(head_dim))


def context_length(config: Any) -> int:
    """The model's own context length (never a sliding window): what transformers positions span.

    `max_position_embeddings` already includes rope scaling in the configs transformers ships
    (gpt-oss: 131,072 with YaRN over 4,096); a scaling block that states only its original length
    and factor is multiplied out.
    """
    length = int(config.max_position_embeddings)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if isinstance(rope, dict):
        original = rope.get("original_max_position_embeddings")
        factor = rope.get("factor")
        if original and factor and int(original) == length and rope.get("rope_type") == "yarn":
            length = int(original * factor)
    return length

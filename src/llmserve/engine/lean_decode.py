"""The lean decode step: a decode step in one native call (kernels/lean_decode.cpp).

At small batches an int8 model's step is mostly overhead: ~2,500 small operators, each
dispatched from Python through transformers' modules. For the families whose decoder layer is
Llama's (Llama, Mistral, Qwen2, Qwen3, SmolLM...), with int8 weights, `LeanStep` runs a decode
step's whole forward pass natively: each sequence's next token and any drafts after it (a
`prediction`, n-gram speculation), up to MAX_ROWS rows. Fused q/k/v and gate/up matrices, the
KV cache written and read in place, both threads working on every matrix. Its linear layers
compute exactly what torch's dynamic int8 linear computes for the same rows; norms, RoPE and
SiLU follow transformers' formulas (a sum or an exp may differ in the last bit). Steps with a
prefill chunk, and larger decode steps, run through transformers as before.

`engine.lean_decode`: `auto` (use it where the model allows, silently otherwise), `on` (the same,
but a model that cannot use it is logged as a warning), `off`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch

from llmserve.engine import decode_kernel
from llmserve.engine.attention import KVCache
from llmserve.engine.quantization import Int8Linear
from llmserve.engine.scheduler import ScheduledChunk

logger = logging.getLogger(__name__)

LeanDecode = Literal["auto", "on", "off"]
MAX_ROWS = 64  # a decode step of more rows (sequences and their drafts) takes the operator path
# decoder layers computing x + attn(norm(x)), then x + down(silu(gate(norm(x))) * up(norm(x)))
LLAMA_LIKE_LAYERS = frozenset(
    {"LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"}
)
# RMSNorms computing weight * (x * rsqrt(mean(x^2) + eps)) (Gemma's 1 + weight is not one)
LLAMA_LIKE_NORMS = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm"})


class UnsupportedModel(ValueError):
    """The model cannot take the lean step (the message says why)."""


class LeanStep:
    """One model's lean decode step, its weights packed once at engine start."""

    def __init__(self, model: Any, native: Any) -> None:
        self._rotary = model.model.rotary_emb
        self._native = native
        self._num_layers = int(native.num_layers())
        self._no_scales = torch.empty(0)

    @classmethod
    def build(cls, model: Any, setting: LeanDecode) -> LeanStep | None:
        """The step for `model`, or None (`off`, no kernel, or a model it cannot run: logged)."""
        if setting == "off":
            return None
        module = decode_kernel.kernel()
        try:
            if module is None:
                raise UnsupportedModel(
                    "the compiled kernels are off (decode_attention: gather) or did not build"
                )
            step = cls(model, _pack(model, module))
        except UnsupportedModel as exc:
            level = logging.WARNING if setting == "on" else logging.DEBUG
            logger.log(level, "lean decode step not used: %s", exc)
            return None
        logger.info(
            "lean decode step on: %d layers, %.0f MB of weights packed for it",
            step._num_layers,
            step.weight_bytes / 1e6,
        )
        return step

    @staticmethod
    def takes(chunks: list[ScheduledChunk]) -> bool:
        """Whether a step of these chunks is a decode step: every chunk is one sequence's next
        token, alone or with drafts after it (all sampled), at most MAX_ROWS rows in all."""
        rows = 0
        for chunk in chunks:
            if chunk.num_tokens != 1 or chunk.num_sampled != chunk.num_query_tokens:
                return False
            rows += chunk.num_query_tokens
        return 0 < rows <= MAX_ROWS

    @property
    def layer_ids(self) -> frozenset[int]:
        return frozenset(range(self._num_layers))

    @property
    def weight_bytes(self) -> int:
        """The packed weights one step reads."""
        return int(self._native.weight_bytes())

    def phase_times(self) -> dict[str, float]:
        """Seconds of the native step per phase (qkv, attention, o_proj, gate_up, down, lm_head)
        summed over the steps since the last call, and `steps`; benchmarks/profile_step.py."""
        times: dict[str, float] = self._native.phase_times()
        return times

    def ready(self, kv: KVCache) -> bool:
        """Every layer's cache exists (they are allocated by the first prefill)."""
        return len(kv.layers) == self._num_layers

    def run(
        self, chunks: list[ScheduledChunk], kv: KVCache, contexts: list[torch.Tensor]
    ) -> torch.Tensor:
        """Logits `[rows, vocab]`: each chunk's token, then its drafts, chunk after chunk.

        `contexts[i]` holds chunk i's context slots, its token and drafts last.
        """
        tokens: list[int] = []
        positions: list[int] = []
        starts: list[int] = []
        lengths: list[int] = []
        offset = 0
        for chunk, context in zip(chunks, contexts, strict=True):
            tokens += [chunk.seq.token_ids[chunk.start], *chunk.draft_token_ids]
            for row in range(chunk.num_query_tokens):
                positions.append(chunk.start + row)
                starts.append(offset)
                lengths.append(chunk.start + row + 1)
            offset += len(context)
        cos, sin = self._rotary(self._no_scales, torch.tensor([positions]))
        layers = [kv.layers[i] for i in range(self._num_layers)]
        with torch.profiler.record_function("llmserve::lean_decode_step"):
            logits: torch.Tensor = self._native.step(
                torch.tensor(tokens),
                torch.cat(contexts),
                torch.tensor(starts),
                torch.tensor(lengths),
                cos[0].float().contiguous(),
                sin[0].float().contiguous(),
                [layer.keys for layer in layers],
                [layer.values for layer in layers],
                [_or_empty(layer.key_scales, self._no_scales) for layer in layers],
                [_or_empty(layer.value_scales, self._no_scales) for layer in layers],
            )
        return logits


def _or_empty(tensor: torch.Tensor | None, empty: torch.Tensor) -> torch.Tensor:
    return empty if tensor is None else tensor


def _pack(model: Any, module: Any) -> Any:
    """The native decoder holding `model`'s packed weights; UnsupportedModel if it cannot."""
    inner: Any = getattr(model, "model", None)
    layers = list(getattr(inner, "layers", []))
    if not layers or any(type(layer).__name__ not in LLAMA_LIKE_LAYERS for layer in layers):
        raise UnsupportedModel(f"{type(model).__name__} has no Llama-like decoder layers")
    config = model.config.get_text_config()
    if getattr(config, "hidden_act", None) != "silu":
        raise UnsupportedModel(f"hidden_act {getattr(config, 'hidden_act', None)!r} is not silu")
    embed = inner.embed_tokens.weight
    if embed.dtype != torch.float32 or not isinstance(model.lm_head, Int8Linear):
        raise UnsupportedModel("it runs int8 weights with float32 activations only")
    first = layers[0].self_attn
    heads = first.q_proj.out_features // first.head_dim
    kv_heads = first.k_proj.out_features // first.head_dim
    norms = [inner.norm] + [n for layer in layers for n in _layer_norms(layer)]
    eps = {float(n.variance_epsilon) for n in norms}
    if len(eps) != 1:
        raise UnsupportedModel("its norms differ in eps")
    try:
        native = module.LeanDecoder(
            embed.detach(),
            _vector(inner.norm),
            _int8(model.lm_head),
            heads,
            kv_heads,
            first.head_dim,
            eps.pop(),
            float(first.scaling),
            127 if model.lm_head.reduce_range else 255,
        )
        for layer in layers:
            native.add_layer(*_layer_weights(layer, config))
    except RuntimeError as exc:  # the native checks: shapes that differ between layers, ...
        raise UnsupportedModel(str(exc).splitlines()[0]) from None
    return native


def _layer_norms(layer: Any) -> list[Any]:
    attn = layer.self_attn
    norms = [layer.input_layernorm, layer.post_attention_layernorm]
    norms += [
        n for n in (getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)) if n is not None
    ]
    for norm in norms:
        if type(norm).__name__ not in LLAMA_LIKE_NORMS:
            raise UnsupportedModel(f"{type(norm).__name__} is not a Llama-like RMSNorm")
    return norms


def _layer_weights(layer: Any, config: Any) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    attn, mlp = layer.self_attn, layer.mlp
    linears = [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
    linears += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    if not all(isinstance(linear, Int8Linear) for linear in linears):
        raise UnsupportedModel("not every linear layer is int8")
    q, k, v, o, gate, up, down = (_int8(linear) for linear in linears)
    weights = [*_fused(q, k, v), *o, *_fused(gate, up), *down]
    empty = torch.empty(0)
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    norms = [
        _vector(layer.input_layernorm),
        _vector(layer.post_attention_layernorm),
        empty if q_norm is None else _vector(q_norm),
        empty if k_norm is None else _vector(k_norm),
    ]
    return weights, norms, _window(layer, config)


def _window(layer: Any, config: Any) -> int:
    """The layer's sliding window (0: none), as its attention passes it to the kernel."""
    attn = layer.self_attn
    if hasattr(attn, "sliding_window"):  # Qwen2, Qwen3: per layer
        window = attn.sliding_window
    elif type(layer).__name__ == "MistralDecoderLayer":  # Mistral: the config's, every layer
        window = getattr(config, "sliding_window", None)
    else:
        window = None
    return int(window or 0)


def _vector(norm: Any) -> torch.Tensor:
    weight: torch.Tensor = norm.weight.detach().float().contiguous()
    return weight


def _int8(linear: Int8Linear) -> list[torch.Tensor]:
    """[int8 weight [n, k], float32 scales [n], float32 bias [n] or empty] of a packed layer."""
    weight, scales, bias = linear.int8_weight()
    return [
        weight.contiguous(),
        scales.contiguous(),
        torch.empty(0) if bias is None else bias.contiguous(),
    ]


def _fused(*parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Matrices sharing an input stacked into one (their outputs in order); a part without a
    bias gets zeros when another has one."""
    weights, scales, biases = zip(*parts, strict=True)
    if any(b.numel() for b in biases):
        bias = torch.cat(
            [
                b if b.numel() else torch.zeros(w.shape[0])
                for w, b in zip(weights, biases, strict=True)
            ]
        )
    else:
        bias = torch.empty(0)
    return [torch.cat(weights), torch.cat(scales), bias]

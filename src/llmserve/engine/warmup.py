"""The load-time proof that the engine computes a model exactly as transformers does.

One warm-up forward through the engine's paged attention (a prefill chunk, then a one-token
decode) must run every layer's attention through the paged cache, and its logits must equal
transformers' own eager forward on the same tokens. Anything else refuses the model.
"""

from __future__ import annotations

from typing import Any

import torch

from llmserve.engine.attention import ATTENTION_NAME
from llmserve.engine.model_runner import ModelRunner
from llmserve.engine.quantization import Int8Linear
from llmserve.engine.scheduler import ScheduledChunk, SchedulerOutput
from llmserve.engine.sequence import Sequence
from llmserve.errors import ModelRefusedError
from llmserve.sampling import SamplingParams

WARMUP_TOKENS = 40


def verify_engine(runner: ModelRunner, *, max_model_len: int) -> None:
    """Raise ModelRefusedError naming the family and what is missing, unless the model is exact."""
    model = runner.model
    family = str(getattr(model.config, "model_type", type(model).__name__))
    token_ids = _warmup_tokens(model, min(WARMUP_TOKENS, max_model_len - 1))
    try:
        expected = _transformers_logits(model, token_ids)
        got = _engine_logits(runner, token_ids)
    except Exception as exc:  # any failure of the family's code is a refusal
        raise ModelRefusedError(
            f"model family {family!r} cannot be served: its warm-up forward failed "
            f"({type(exc).__name__}: {exc})"
        ) from None
    _check_layers(family, runner, model)
    _check_logits(family, got, expected, exact=_is_exact(runner))


def _warmup_tokens(model: Any, num: int) -> list[int]:
    vocab = int(model.get_input_embeddings().num_embeddings)
    return [(7 * i + 3) % vocab for i in range(max(num, 2))]


@torch.inference_mode()
def _transformers_logits(model: Any, token_ids: list[int]) -> torch.Tensor:
    model.set_attn_implementation("eager")
    try:
        logits: torch.Tensor = model(torch.tensor([token_ids]), use_cache=False).logits
    finally:
        model.set_attn_implementation(ATTENTION_NAME)
    return logits[0, -2:].float()


def _engine_logits(runner: ModelRunner, token_ids: list[int]) -> torch.Tensor:
    num_blocks = -(-len(token_ids) // runner.block_size)
    seq = Sequence("warmup", 0, token_ids[:-1], len(token_ids) - 1, SamplingParams(max_tokens=1))
    seq.block_ids = list(range(num_blocks))
    prefill = runner.execute(SchedulerOutput([ScheduledChunk(seq, 0, len(token_ids) - 1)]))
    seq.token_ids.append(token_ids[-1])
    decode = runner.execute(SchedulerOutput([ScheduledChunk(seq, len(token_ids) - 1, 1)]))
    return torch.cat([prefill, decode])


def _check_layers(family: str, runner: ModelRunner, model: Any) -> None:
    num_layers = int(model.config.get_text_config().num_hidden_layers)
    missing = sorted(set(range(num_layers)) - runner.layers_ran)
    if missing:
        raise ModelRefusedError(
            f"model family {family!r} cannot be served: the attention of layers {missing} does "
            "not run through the engine's paged attention"
        )


def _is_exact(runner: ModelRunner) -> bool:
    """float32 weights, activations and cache: the engine must equal transformers to 1e-3."""
    model = runner.model
    return model.dtype == runner.kv.dtype == torch.float32 and not _int8(model)


def _int8(model: Any) -> bool:
    # NOTE: int8 activations are quantized with scales of the rows computed together, so a
    # prefill and a lone decode round differently: close, not equal to the last bit.
    return any(isinstance(m, Int8Linear) for m in model.modules())


def _check_logits(family: str, got: torch.Tensor, expected: torch.Tensor, *, exact: bool) -> None:
    tolerance = (1e-3 if exact else 5e-2) * max(1.0, float(expected.abs().max()))
    error = float((got - expected).abs().max())
    if error > tolerance:
        raise ModelRefusedError(
            f"model family {family!r} cannot be served: the engine's logits differ from "
            f"transformers' by {error:.3g} (tolerance {tolerance:.3g}); a layer computes "
            "something the paged attention does not"
        )

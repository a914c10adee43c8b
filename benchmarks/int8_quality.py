"""How far int8 weights move a model's next-token distributions from float32's.

    python benchmarks/int8_quality.py      # writes benchmarks/results/int8_quality.md

Teacher-forced over a fixed text (the built-in model's corpus, tokenized by each model's own
tokenizer, or fixed ids where the tokenizer cannot read it), each variant's next-token
distribution is compared with float32's at every position: top-1 agreement (the same argmax) and
mean KL(float32 || variant). Models: the built-in tiny chat model and the SmolLM2-135M-shaped one.
Both have random weights, so their distributions are flat and near-ties are common: bfloat16
weights are measured the same way as a yardstick.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_cpu import RESULTS, build_model

from llmserve.engine.quantization import quantize_int8
from llmserve.models.builtin import ensure_tiny_chat

NUM_TOKENS = 1024
VARIANTS = {  # name: (per_channel, reduce_range)
    "per-channel, 8-bit activations": (True, False),
    "per-tensor, 8-bit activations": (False, False),
    "per-channel, 7-bit activations": (True, True),
    "per-tensor, 7-bit activations": (False, True),
}


def fixed_ids(folder: Path, vocab_size: int) -> torch.Tensor:
    """The corpus text through the model's tokenizer; a fixed id pattern if it reads it as <unk>."""
    from transformers import AutoTokenizer

    import llmserve.models.builtin as builtin

    text = (Path(builtin.__file__).parent / "corpus" / "tiny_chat.txt").read_text()
    ids = AutoTokenizer.from_pretrained(folder)(text)["input_ids"][:NUM_TOKENS]
    if len(set(ids)) < 16:  # a word-level tokenizer over `w<i>` words: no real text
        ids = [(7919 * i) % (vocab_size - 3) + 3 for i in range(NUM_TOKENS)]
    return torch.tensor([ids])


@torch.inference_mode()
def compare(reference: Any, candidate: Any, ids: torch.Tensor) -> tuple[float, float]:
    """(top-1 agreement, mean KL in nats) of `candidate`'s next-token distributions."""
    ref = torch.log_softmax(reference(ids).logits[0].float(), dim=-1)
    cand = torch.log_softmax(candidate(ids).logits[0].float(), dim=-1)
    agreement = (ref.argmax(-1) == cand.argmax(-1)).float().mean().item()
    kl = (ref.exp() * (ref - cand)).sum(-1).mean().item()
    return agreement, kl


def measure(name: str, folder: Path) -> list[str]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = fixed_ids(folder, model.config.vocab_size)
    variants = {"bfloat16 weights (yardstick)": copy.deepcopy(model).to(torch.bfloat16)}
    for variant, (per_channel, reduce_range) in VARIANTS.items():
        variants[f"int8 {variant}"] = copy.deepcopy(model)
        quantize_int8(
            variants[f"int8 {variant}"], per_channel=per_channel, reduce_range=reduce_range
        )
    rows = []
    for variant, candidate in variants.items():
        agreement, kl = compare(model, candidate, ids)
        rows.append(f"| {name} | {variant} | {100 * agreement:.1f} % | {kl:.2e} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    home = Path.home() / ".cache" / "llmserve"
    header = [
        f"Teacher-forced over {NUM_TOKENS} tokens, int8 against float32 (torch "
        f"{torch.__version__}, quantized engine {torch.backends.quantized.engine}).",
        "",
        "| model | weights | top-1 agreement | mean KL (nats) |",
        "|---|---|---|---|",
    ]
    rows = measure("built-in tiny chat", ensure_tiny_chat(home))
    rows += measure("SmolLM2-135M-shaped", build_model(home))
    report = "\n".join(header + rows) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_quality.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()

"""Grammar-mask overhead per engine step at batch 32, with a 49k and a 152k vocabulary.

    python benchmarks/structured_overhead.py            # what docs/benchmarks.md reports
    python benchmarks/structured_overhead.py --steps 8  # a quicker look

For each vocabulary size it builds, locally and from a fixed seed, a byte-level BPE tokenizer of
exactly that size (synthetic merges, named bench/bpe-<size>-synthetic) and a random Llama with
SmolLM2-135M's shape over it. It then runs 32 sequences through llmserve's engine twice, without a
grammar and with a JSON schema (every sequence writing a long string, where most of the vocabulary
is allowed, the costly case for masks), and reports the median decode step time of each, the mask
time (llguidance fill + apply to the logits) timed inside the constrained steps and alone, and the
overhead as mask time over the rest of the same steps: timed in the same steps, it holds under a
machine's changing load, where two separate runs do not. Writes benchmarks/results/
structured_overhead.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VOCAB_SIZES = (49152, 151936)
BATCH = 32
PROMPT_LEN = 32
SHAPE = dict(
    hidden_size=576,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    intermediate_size=1536,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
SCHEMA = {
    "type": "object",
    "properties": {"note": {"type": "string", "maxLength": 4000}, "n": {"type": "integer"}},
    "required": ["note", "n"],
    "additionalProperties": False,
}
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'\"-_()[]{}<>/\n"


def synthetic_bpe(vocab_size: int, seed: int = 0) -> Any:
    """A byte-level BPE of exactly `vocab_size` tokens: bytes, then merges of random token pairs.

    Merges favour short pieces of text characters, so tokens look like a real vocabulary's
    (words, word pieces, punctuation runs); three special tokens come last.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(byte_chars))}
    text_chars = [
        pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(c)[0][0] for c in ALPHABET
    ]
    pieces = list(dict.fromkeys(text_chars))
    rng = random.Random(seed)
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size - 3:
        left, right = rng.choice(pieces), rng.choice(pieces)
        merged = left + right
        if merged in vocab or len(merged) > 12:
            continue
        vocab[merged] = len(vocab)
        merges.append((left, right))
        pieces.append(merged)
    for special in ("<unk>", "<s>", "</s>"):
        vocab[special] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def build_engine(vocab_size: int, with_grammars: bool) -> tuple[Any, Any, float]:
    """The engine over a random SmolLM2-135M-shaped model, its grammar compiler, build seconds."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from llmserve.config import EngineConfig
    from llmserve.engine.llm_engine import LLMEngine
    from llmserve.models.tokenizer import ChatTokenizer
    from llmserve.structured.llguidance_compiler import LlguidanceCompiler

    hf_tokenizer = synthetic_bpe(vocab_size)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        LlamaConfig(**SHAPE, vocab_size=len(hf_tokenizer)), dtype=torch.float32
    ).eval()
    start = time.perf_counter()
    compiler = LlguidanceCompiler.from_hf(hf_tokenizer) if with_grammars else None
    build_s = time.perf_counter() - start
    config = EngineConfig(kv_cache_memory_mb=512, max_num_seqs=BATCH, max_num_batched_tokens=4096)
    engine = LLMEngine(
        model,
        ChatTokenizer(hf_tokenizer, None),
        config,
        max_model_len=2048,
        eos_token_ids=frozenset([hf_tokenizer.eos_token_id]),
        grammars=compiler,
    )
    return engine, compiler, build_s


class TimedMasks:
    """Wraps the engine's mask function to time it inside real steps (same load as the step)."""

    def __init__(self) -> None:
        import llmserve.engine.llm_engine as llm_engine

        self.module = llm_engine
        self.inner = llm_engine.apply_grammar_masks
        self.seconds: list[float] = []
        llm_engine.apply_grammar_masks = self  # type: ignore[assignment]

    def __call__(self, *args: Any) -> None:
        start = time.perf_counter()
        self.inner(*args)
        self.seconds.append(time.perf_counter() - start)


def decode_step_times(engine: Any, grammar: Any, num_steps: int) -> list[float]:
    """Seconds per decode step of BATCH sequences (prefill steps are not counted)."""
    from llmserve.sampling import SamplingParams
    from llmserve.types import GenerateRequest

    rng = random.Random(1)
    params = SamplingParams(max_tokens=num_steps + 2, temperature=1.0, seed=0, ignore_eos=True)
    for i in range(BATCH):
        prompt = tuple(rng.randrange(300, 40000) for _ in range(PROMPT_LEN))
        engine.add_request(GenerateRequest(f"r{i}", prompt, params, grammar=grammar))
    while (
        any(s.num_output_tokens == 0 for s in engine.scheduler.running) or engine.scheduler.waiting
    ):
        engine.step()  # prefill
    times = []
    while engine.has_unfinished_requests():
        start = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - start)
    return times[1:-1]  # the first may finish a prefill, the last only finishes sequences


def mask_times(engine: Any, compiler: Any, grammar: Any, num_steps: int) -> list[float]:
    """Seconds to fill and apply BATCH masks, measured alone on logits of the model's width."""
    import torch

    from llmserve.structured.masks import apply_grammar_masks

    matchers = [compiler.new_matcher(grammar) for _ in range(BATCH)]
    prefix = engine.tokenizer.encode('{"note":"', add_special_tokens=False)
    for matcher in matchers:
        for token in prefix:
            assert matcher.consume(token)
    logits = torch.randn(BATCH, engine.vocab_size)
    times = []
    for _ in range(num_steps):
        start = time.perf_counter()
        apply_grammar_masks(logits, matchers, compiler)
        times.append(time.perf_counter() - start)
    return times


def measure(vocab_size: int, num_steps: int) -> dict[str, float]:
    from llmserve.types import GrammarSpec

    engine, compiler, build_s = build_engine(vocab_size, with_grammars=True)
    grammar = GrammarSpec("json_schema", json.dumps(SCHEMA))
    compiler.compile(grammar)
    plain = statistics.median(decode_step_times(engine, None, num_steps))
    timed = TimedMasks()
    constrained_steps = decode_step_times(engine, grammar, num_steps)
    constrained = statistics.median(constrained_steps)
    in_step = statistics.median(timed.seconds[-len(constrained_steps) - 1 : -1])
    mask = statistics.median(mask_times(engine, compiler, grammar, num_steps * 4))
    return {
        "vocab_size": vocab_size,
        "tokenizer_build_s": build_s,
        "step_ms_plain": plain * 1e3,
        "step_ms_constrained": constrained * 1e3,
        "mask_ms": mask * 1e3,
        "mask_ms_in_step": in_step * 1e3,
        "mask_overhead_pct": 100 * in_step / (constrained - in_step),
        "step_overhead_pct": 100 * (constrained - plain) / plain,
    }


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| vocabulary | tokenizer build | step, no grammar | step, JSON schema "
        "| masks in that step | masks alone | overhead (masks / rest of step) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['vocab_size']):,} | {r['tokenizer_build_s']:.2f} s | "
            f"{r['step_ms_plain']:.1f} ms | {r['step_ms_constrained']:.1f} ms | "
            f"{r['mask_ms_in_step']:.2f} ms | {r['mask_ms']:.2f} ms | "
            f"{r['mask_overhead_pct']:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24, help="decode steps measured per run")
    args = parser.parse_args()
    rows = [measure(size, args.steps) for size in VOCAB_SIZES]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "structured_overhead.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "structured_overhead.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()

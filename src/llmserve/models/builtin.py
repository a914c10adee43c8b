"""The built-in `llmserve/tiny-chat` model, built locally on first use.

Llama architecture with random weights from a fixed seed, a byte-level BPE tokenizer trained on a
small corpus shipped with the package, and the Llama-2 chat template. Its text is noise; every
code path it exercises is the one a real Llama-2-chat model takes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from llmserve.models.chat_templates import LLAMA_2

TINY_CHAT_DIRNAME = "llmserve--tiny-chat"
BUILD_VERSION = 1  # bump when the recipe changes, so caches rebuild
SEED = 0
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
VOCAB_SIZE = 1024


def ensure_tiny_chat(home: Path) -> Path:
    """The tiny-chat model folder under `home/models`, built there first if missing or stale."""
    folder = home / "models" / TINY_CHAT_DIRNAME
    if _is_current(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # NOTE: build beside the target and rename, so a concurrent start never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=".tiny-chat-", dir=folder.parent))
    try:
        _build(staging)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except OSError:
        if not _is_current(folder):  # lost a race only if the winner's build is complete
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _is_current(folder: Path) -> bool:
    marker = folder / "llmserve-build.json"
    if not marker.is_file():
        return False
    return bool(json.loads(marker.read_text()).get("version") == BUILD_VERSION)


def _build(folder: Path) -> None:
    build_tiny_chat(folder)


def build_tiny_chat(folder: Path, *, vocab_size: int = VOCAB_SIZE) -> None:
    """The tiny-chat recipe into `folder`; another `vocab_size` makes a model with another
    tokenizer (tests of canary variants that tokenize differently)."""
    tokenizer = _train_tokenizer(vocab_size)
    tokenizer.save_pretrained(folder)
    _build_model(tokenizer).save_pretrained(folder)
    (folder / "llmserve-build.json").write_text(
        json.dumps({"version": BUILD_VERSION, "seed": SEED})
    )


def _train_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = resources.files("llmserve.models").joinpath("corpus/tiny_chat.txt").read_text("utf-8")
    bpe = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus.splitlines(), trainer=trainer)
    bos_id = bpe.token_to_id("<s>")
    # Like Llama's tokenizer: BOS is prepended when special tokens are added.
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=LLAMA_2,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def _build_model(tokenizer: Any) -> Any:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    bos_id = tokenizer.convert_tokens_to_ids("<s>")
    eos_id = tokenizer.convert_tokens_to_ids("</s>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=bos_id, eos_token_id=eos_id
    )
    return model

"""The real `llmserve serve --model FOLDER`: a GPT-2 folder answers; a wrong engine is refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

pytestmark = pytest.mark.slow
# The engine with one layer option broken, as a family whose module scaling were ignored would be.
BROKEN_SCALING = """
import sys
import llmserve.engine.attention as attention
read = attention.LayerOptions.read.__func__
attention.LayerOptions.read = classmethod(
    lambda cls, head_dim, scaling, kw: read(cls, head_dim, 2.0 * (scaling or head_dim**-0.5), kw)
)
from llmserve.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def gpt2_folder(tiny_chat_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random GPT-2 (no `num_key_value_heads`) with the tiny-chat tokenizer and chat template."""
    folder = tmp_path_factory.mktemp("gpt2")
    for name in os.listdir(tiny_chat_path):
        if "token" in name or name == "chat_template.jinja":
            shutil.copy(tiny_chat_path / name, folder / name)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=1024, n_embd=64, n_layer=2, n_head=4, n_positions=512)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def serve_command(folder: Path, *prefix: str) -> list[str]:
    return [sys.executable, *prefix, "serve", "--model", str(folder), "--port", "0"]


@pytest.fixture(scope="module")
def base_url(gpt2_folder: Path, llmserve_home: Path) -> Iterator[str]:
    env = {**os.environ, "LLMSERVE_HOME": str(llmserve_home)}
    command = serve_command(gpt2_folder, "-m", "llmserve")
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", first)
            assert match, f"no URL in {first!r}"
            yield match.group(1)
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_gpt2_folder_answers_chat_completions(base_url: str, gpt2_folder: Path) -> None:
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Hello!"}],
            max_tokens=8,
            temperature=0,
        )
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    assert reply.choices[0].finish_reason == "length"


def test_an_engine_that_differs_from_transformers_is_refused_in_one_line(
    gpt2_folder: Path, llmserve_home: Path
) -> None:
    env = {**os.environ, "LLMSERVE_HOME": str(llmserve_home)}
    done = subprocess.run(
        serve_command(gpt2_folder, "-c", BROKEN_SCALING),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("llmserve:")]
    assert len(lines) == 1, done.stderr
    assert "'gpt2'" in lines[0] and "logits differ" in lines[0]
    assert "Traceback" not in done.stderr

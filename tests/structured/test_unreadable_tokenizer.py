"""A model whose tokenizer llguidance cannot read (word-level: "can't determine decoder type")
loads and answers, with structured output off: one warning at load, and a 400 naming the field
for each request that needs a grammar. `tools` in `auto` mode still works (parsed, not forced).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.local import LocalBackend
from llmserve.config import EngineConfig, ModelConfig, ServerConfig

MODEL = "word-level"
VOCAB_SIZE = 96
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
MESSAGES: list[Any] = [{"role": "user", "content": "w5 w6 w7"}]


def build_word_level_model(folder: Path) -> Path:
    """A random tiny Llama whose tokenizer is word-level (token i is the word `w{i}`)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB_SIZE)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        chat_template=TEMPLATE,
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, list[logging.LogRecord]]]:
    """http://127.0.0.1:PORT/v1 serving the word-level model, and the load's warning records."""
    home = tmp_path_factory.mktemp("word-level-home")
    folder = build_word_level_model(home / "model")
    model = ModelConfig(MODEL, source=str(folder), max_model_len=256)
    engine = EngineConfig(kv_cache_memory_mb=8, max_num_seqs=4)
    config = ServerConfig(models=(model,), home=home, engine=engine)
    backend = LocalBackend(model, engine, home)
    records = _Records()
    logging.getLogger("llmserve").addHandler(records)
    app = create_app(config, {MODEL: backend}, build_gatekeeper(config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1", records.records
    logging.getLogger("llmserve").removeHandler(records)
    server.should_exit = True
    thread.join(timeout=30)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def client(served: tuple[str, list[logging.LogRecord]]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served[0], api_key="anonymous", max_retries=0) as sdk:
        yield sdk


def test_loads_with_one_warning_and_answers(
    served: tuple[str, list[logging.LogRecord]], client: openai.OpenAI
) -> None:
    warnings = [r.getMessage() for r in served[1] if "structured output" in r.getMessage()]
    assert warnings == [
        f"model {MODEL}: structured output disabled: llguidance cannot read its tokenizer "
        "(can't determine decoder type: None)"
    ]
    completion = client.completions.create(model=MODEL, prompt="w3 w4", max_tokens=4)
    assert completion.usage is not None and completion.usage.completion_tokens >= 1
    chat = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert chat.choices[0].message.content


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {}},
                }
            },
            "response_format",
        ),
        ({"extra_body": {"structured_outputs": {"choice": ["w3", "w4"]}}}, "structured_outputs"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            "tool_choice",
        ),
    ],
)
def test_requests_that_need_a_grammar_are_400(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4, **extra)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(
        f"`{param}` needs structured output, which this model's tokenizer does not support: "
        f"model '{MODEL}' does not support structured output"
    )


def test_completions_with_a_grammar_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(
            model=MODEL,
            prompt="w3",
            max_tokens=4,
            extra_body={"structured_outputs": {"regex": "w[0-9]"}},
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "structured_outputs"


def test_tools_in_auto_mode_still_answer(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=4, tools=TOOLS, tool_choice="auto"
    )
    [choice] = chat.choices
    assert choice.finish_reason in ("stop", "length")
    assert choice.message.content or choice.message.tool_calls

"""Mistral's tool calls in `auto` mode through the real server and the openai SDK.

Two tiny random Mistral-architecture models whose tokenizers have `[TOOL_CALLS]` (and `[ARGS]`)
as special tokens: one writes the list form `[TOOL_CALLS][{...}]`, the other the tokenizer v11
form `[TOOL_CALLS]name[ARGS]{...}`. Their output is forced with a `structured_outputs` grammar
whose first token is the special token itself (`<[id]>`), as a trained model would emit it; the
detokenizer must keep that token for the parser, and still hide the other special tokens.
"""

from __future__ import annotations

import json
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

LIST_MODEL, ARGS_MODEL = "mistral-list", "mistral-args"
TEMPLATE = (
    "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    "{# calls are written [TOOL_CALLS]"
)
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]
MESSAGES: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER, TIME = '{"city": "Paris"}', '{"city": "Tokyo"}'
CALLS = [("get_weather", WEATHER), ("get_time", TIME)]
# The forced output: text, or the special tokens as `<[TOOL_CALLS]>` / `<[ARGS]>` (their ids).
FORCED = {
    LIST_MODEL: [
        "<[TOOL_CALLS]>",
        f'[{{"name": "get_weather", "arguments": {WEATHER}}}, '
        f'{{"name": "get_time", "arguments": {TIME}}}]',
    ],
    ARGS_MODEL: [
        *("<[TOOL_CALLS]>", "get_weather", "<[ARGS]>", WEATHER),
        *("<[TOOL_CALLS]>", "get_time", "<[ARGS]>", TIME),
    ],
}


def build_mistral(folder: Path, specials: list[str], template: str) -> Path:
    """A random tiny Mistral with a byte-level tokenizer (256 bytes, then the special tokens)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend = Tokenizer(models.BPE({c: i for i, c in enumerate(sorted(alphabet))}, []))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, chat_template=template, clean_up_tokenization_spaces=False
    )
    tokenizer.add_special_tokens(
        {"bos_token": "<s>", "eos_token": "</s>", "additional_special_tokens": specials}
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    MistralForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The server's /v1 URL and each model's `[TOOL_CALLS]` and `<s>` token ids."""
    home = tmp_path_factory.mktemp("mistral-home")
    folders = {
        LIST_MODEL: build_mistral(home / "list", ["[TOOL_CALLS]"], TEMPLATE + " #}"),
        ARGS_MODEL: build_mistral(
            home / "args", ["[TOOL_CALLS]", "[ARGS]"], TEMPLATE + "name[ARGS]args #}"
        ),
    }
    models = tuple(
        ModelConfig(name, source=str(folder), max_model_len=4096)
        for name, folder in folders.items()
    )
    engine = EngineConfig(kv_cache_memory_mb=8, max_num_seqs=4)
    config = ServerConfig(models=models, home=home, engine=engine)
    backends = {m.name: LocalBackend(m, engine, home) for m in models}
    app = create_app(config, backends, build_gatekeeper(config))  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    from transformers import AutoTokenizer

    ids = {}
    for name, folder in folders.items():
        vocab = AutoTokenizer.from_pretrained(folder).get_vocab()
        ids[name] = {
            text: vocab[text] for text in ("[TOOL_CALLS]", "[ARGS]", "<s>") if text in vocab
        }
    yield {"base_url": f"http://127.0.0.1:{port}/v1", "ids": ids}
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def client(served: dict[str, Any]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served["base_url"], api_key="anonymous", max_retries=0) as sdk:
        yield sdk


def forced_calls(served: dict[str, Any], model: str) -> dict[str, Any]:
    """A grammar that makes `model` write its calls, starting with the `[TOOL_CALLS]` token."""
    ids = served["ids"][model]
    pieces = [
        f"<[{ids[piece[1:-1]]}]>" if piece.startswith("<[") else json.dumps(piece)
        for piece in FORCED[model]
    ]
    return {"structured_outputs": {"grammar": "start: " + " ".join(pieces)}}


@pytest.mark.parametrize("model", [LIST_MODEL, ARGS_MODEL])
def test_auto_mode_parses_the_calls(
    served: dict[str, Any], client: openai.OpenAI, model: str
) -> None:
    chat = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=TOOLS,
        max_tokens=200,
        extra_body=forced_calls(served, model),
    )
    [choice] = chat.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == CALLS  # type: ignore[union-attr]
    assert all(c.id.startswith("call_") for c in calls)


@pytest.mark.parametrize("model", [LIST_MODEL, ARGS_MODEL])
def test_auto_mode_streams_the_calls(
    served: dict[str, Any], client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=TOOLS,
        max_tokens=200,
        stream=True,
        extra_body=forced_calls(served, model),
    )
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    content, finish = "", None
    for chunk in stream:
        [choice] = chunk.choices
        content += choice.delta.content or ""
        for call in choice.delta.tool_calls or []:
            if call.function and call.function.name:
                names[call.index] = call.function.name
            arguments[call.index] = arguments.get(call.index, "") + (
                (call.function.arguments if call.function else None) or ""
            )
        finish = choice.finish_reason or finish
    assert content == ""
    assert finish == "tool_calls"
    assert [(names[i], arguments[i]) for i in sorted(names)] == CALLS


def test_other_special_tokens_stay_hidden(served: dict[str, Any], client: openai.OpenAI) -> None:
    bos_id = served["ids"][LIST_MODEL]["<s>"]
    chat = client.chat.completions.create(
        model=LIST_MODEL,
        messages=MESSAGES,
        max_tokens=20,
        extra_body={"structured_outputs": {"grammar": f'start: <[{bos_id}]> "hi"'}},
    )
    assert chat.choices[0].message.content == "hi"
    assert chat.usage is not None and chat.usage.completion_tokens == 3


@pytest.mark.parametrize("model", [LIST_MODEL, ARGS_MODEL])
def test_required_forces_a_call_in_the_models_format(client: openai.OpenAI, model: str) -> None:
    """The forcing grammar's `[TOOL_CALLS]`/`[ARGS]` become the special tokens, not text."""
    chat = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=60,
    )
    [choice] = chat.choices
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_time"  # type: ignore[union-attr]
    assert choice.finish_reason in ("tool_calls", "length")

from __future__ import annotations

from pathlib import Path

import pytest

from llmserve.errors import InvalidRequestError
from llmserve.models.chat_templates import BUILTIN_TEMPLATES, CHATML, resolve_chat_template
from llmserve.models.tokenizer import ChatTokenizer
from llmserve.types import ChatMessage


def test_llama_2_template_renders_metas_format_exactly(tiny_chat_tokenizer: ChatTokenizer) -> None:
    text = tiny_chat_tokenizer.render_chat(
        [
            ChatMessage("system", "You are a helpful assistant."),
            ChatMessage("user", "Hello"),
            ChatMessage("assistant", "Hi there"),
            ChatMessage("user", "Tell me a joke."),
        ]
    )
    assert text == (
        "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there </s>"
        "<s>[INST] Tell me a joke. [/INST]"
    )


def test_llama_2_template_without_system(tiny_chat_tokenizer: ChatTokenizer) -> None:
    text = tiny_chat_tokenizer.render_chat([ChatMessage("user", "Say 'Test'.")])
    assert text == "<s>[INST] Say 'Test'. [/INST]"


def test_roles_out_of_order_are_a_400_on_messages(tiny_chat_tokenizer: ChatTokenizer) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        tiny_chat_tokenizer.render_chat([ChatMessage("assistant", "first")])
    assert raised.value.param == "messages"
    assert "alternate" in raised.value.message


def test_chatml_template_by_name(tiny_chat_tokenizer: ChatTokenizer) -> None:
    chatml = ChatTokenizer(tiny_chat_tokenizer.hf, resolve_chat_template("chatml", None))
    text = chatml.render_chat([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_model_without_template_asks_for_one(tiny_chat_tokenizer: ChatTokenizer) -> None:
    bare = ChatTokenizer(tiny_chat_tokenizer.hf, None)
    with pytest.raises(InvalidRequestError, match="set `chat_template`"):
        bare.render_chat([ChatMessage("user", "Hi")])


def test_resolve_template_sources(tmp_path: Path) -> None:
    assert resolve_chat_template(None, "{{ own }}") == "{{ own }}"
    assert resolve_chat_template("chatml", "{{ own }}") == CHATML
    assert resolve_chat_template("{{ inline }}", None) == "{{ inline }}"
    template_file = tmp_path / "t.jinja"
    template_file.write_text("{{ from_file }}")
    assert resolve_chat_template(str(template_file), None) == "{{ from_file }}"
    with pytest.raises(ValueError, match="chatml, llama-2"):
        resolve_chat_template("vicuna", None)
    assert set(BUILTIN_TEMPLATES) >= {"llama-2", "chatml"}

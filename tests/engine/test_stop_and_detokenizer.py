from __future__ import annotations

from pathlib import Path
from typing import Any

from llmserve.engine.detokenizer import IncrementalDetokenizer
from llmserve.models.builtin import ensure_tiny_chat
from llmserve.models.tokenizer import ChatTokenizer
from llmserve.types import GenerateRequest

from .conftest import ByteDecoder, greedy, make_engine, run_all

PROMPT = (5, 17, 42, 99, 3, 250, 7)


def stream(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], IncrementalDetokenizer]:
    detokenizer = IncrementalDetokenizer(ByteDecoder().decode, stop)
    deltas = []
    for byte in text.encode():
        detokenizer.add_token(byte)
        deltas.append(detokenizer.take_delta(final=False))
        if detokenizer.stopped:
            break
    deltas.append(detokenizer.take_delta(final=True))
    return deltas, detokenizer


def test_multibyte_characters_are_never_split() -> None:
    text = "héllo 😀 中文 ok"
    deltas, _ = stream(text)
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert "😀" in deltas  # the emoji arrives whole, after its fourth byte


def test_stop_string_across_tokens_is_never_emitted() -> None:
    deltas, detokenizer = stream("say hello world please", stop=("lo wor",))
    assert detokenizer.stopped
    assert "".join(deltas) == "say hel"
    assert not any("lo" in d for d in deltas)


def test_held_back_stop_prefix_is_released_when_it_does_not_match() -> None:
    deltas, detokenizer = stream("abcab", stop=("abd",))
    assert not detokenizer.stopped
    assert deltas == ["", "", "abc", "", "", "ab"]


def test_engine_stop_string_truncates_text_and_finishes_with_stop(llama: Any) -> None:
    free = run_all(make_engine(llama), [GenerateRequest("t", PROMPT, greedy(20))])[("t", 0)]
    text = "".join(o.text for o in free)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    stopped = run_all(make_engine(llama), [GenerateRequest("t", PROMPT, greedy(20, stop=(stop,)))])
    outputs = stopped[("t", 0)]
    assert "".join(o.text for o in outputs) == text[: text.index(stop)]
    assert outputs[-1].finish_reason == "stop"


def test_abort_frees_blocks_at_once(llama: Any) -> None:
    engine = make_engine(llama)
    free_before = engine.block_manager.num_free_blocks
    engine.add_request(GenerateRequest("a", PROMPT, greedy(50)))
    engine.add_request(GenerateRequest("b", PROMPT, greedy(50)))
    engine.step()
    engine.step()
    assert engine.block_manager.num_free_blocks < free_before
    outputs = engine.abort_request("a") + engine.abort_request("b")
    assert [o.finish_reason for o in outputs] == ["abort", "abort"]
    assert engine.block_manager.num_free_blocks == free_before
    assert not engine.has_unfinished_requests()


def test_real_byte_level_tokenizer_streams_emoji_and_cjk_whole(tmp_path: Path) -> None:
    tokenizer = ChatTokenizer.from_pretrained(str(ensure_tiny_chat(tmp_path)))
    text = "Emoji 😀🎉 and 中文字符 and naïve café"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # rare characters take several byte-level tokens
    detokenizer = IncrementalDetokenizer(tokenizer.decode)
    deltas = []
    for token_id in ids:
        detokenizer.add_token(token_id)
        deltas.append(detokenizer.take_delta(final=False))
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)

"""`llmserve chat` driven as a person drives it: through a pseudo-terminal, and through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from chat_helpers import RecordingBackend

pytestmark = pytest.mark.slow


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


@pytest.fixture
def chat(chat_server: str, tmp_path: Path) -> Iterator[pexpect.spawn]:
    """`llmserve chat --base-url ROOT/v1` in a 160x40 pseudo-terminal."""
    # NOTE: pexpect does not answer prompt_toolkit's cursor-position queries; a real terminal does.
    env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
    args = ["-m", "llmserve", "chat", "--base-url", f"{chat_server}/v1"]
    args += ["--history", str(tmp_path / "history")]
    child = pexpect.spawn(
        sys.executable, args, env=env, encoding="utf-8", dimensions=(40, 160), timeout=30
    )
    child.expect(">>>")
    yield child
    child.close(force=True)


def test_reply_streams_ctrl_c_stops_it_and_the_session_goes_on(
    chat: pexpect.spawn, backend: RecordingBackend
) -> None:
    chat.sendline("Hello there")
    chat.expect("Streaming words arrive")
    assert backend.load().num_running == 1  # the reply shows while it is still generated
    chat.sendintr()  # Ctrl+C
    chat.expect(r"\[stopped\]")
    chat.expect(">>>")
    wait_until(lambda: backend.load().num_running == 0, "the server frees the stopped request")
    assert len(backend.aborted_request_ids) == 1

    chat.sendline("/set temperature 0")
    chat.expect("temperature = 0.0")
    chat.sendline("/set max_tokens 9")
    chat.expect("max_tokens = 9")
    chat.sendline("And again?")
    chat.expect("Streaming")
    chat.expect(">>>")
    last = backend.requests[-1]
    assert (last.sampling.temperature, last.sampling.max_tokens) == (0.0, 9)
    prompt = backend.prompt_of(last)
    assert "Hello there" in prompt and "Streaming words" in prompt  # the stopped reply is kept
    assert prompt.endswith("<|user|>\nAnd again?\n<|assistant|>\n")

    chat.sendline("/stats")
    chat.expect(r"TTFT \d+ ms · [\d.]+ tokens/s · 9 tokens")
    chat.sendline("/exit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_multiline_system_save_load_and_ctrl_d(
    chat: pexpect.spawn, backend: RecordingBackend, tmp_path: Path
) -> None:
    chat.sendline("/system Be brief.")
    chat.expect("system prompt set")
    chat.sendline("/set max_tokens 3")
    chat.expect("max_tokens = 3")
    chat.sendline('"""first line')
    chat.expect(r"\.\.\.")
    chat.sendline('second line"""')
    chat.expect("Str")
    chat.expect(">>>")
    assert "<|system|>\nBe brief.\n<|user|>\nfirst line\nsecond line\n" in backend.prompt_of(
        backend.requests[-1]
    )
    saved = tmp_path / "chat.json"
    chat.sendline(f"/save {saved}")
    chat.expect("saved 2 messages")
    chat.sendline("/clear")
    chat.expect("conversation cleared")
    chat.sendline(f"/load {saved}")
    chat.expect("loaded 2 messages; model: fake-chat")
    chat.expect(">>>")
    chat.sendcontrol("d")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_piped_chat_prints_plain_text(chat_server: str, backend: RecordingBackend) -> None:
    script = "/set max_tokens 9\nHello\n/stats\n/exit\n"
    command = [sys.executable, "-m", "llmserve", "chat", "--base-url", chat_server]
    done = subprocess.run(command, input=script, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Streaming\n"  # the reply alone, no colours or cursor moves
    assert "max_tokens = 9" in done.stderr
    assert "9 tokens" in done.stderr


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "llmserve", "chat", "--base-url", "http://127.0.0.1:9/v1"]
    done = subprocess.run(command, input="", capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("llmserve chat: cannot reach http://127.0.0.1:9: ")
    assert "start one with `llmserve serve`" in done.stderr
    assert "Traceback" not in done.stderr

"""Where `llmserve chat` reads messages and shows replies: a rich terminal, or plain pipes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from llmserve.chat.stream import ReplyStream

FENCE = '"""'


class ChatTerminal(Protocol):
    """Reads a message (EOFError at the end, KeyboardInterrupt on Ctrl+C) and shows replies."""

    def read_message(self) -> str: ...

    def show_reply(self, stream: ReplyStream) -> None: ...

    def notice(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...


def read_multiline(read_line: Callable[[str], str]) -> str:
    """One message; a message that starts with \"\"\" goes on until a line that ends with it."""
    line = read_line(">>> ")
    if not line.lstrip().startswith(FENCE):
        return line
    first = line.lstrip()[len(FENCE) :]
    if first.rstrip().endswith(FENCE):  # \"\"\"all on one line\"\"\"
        return first.rstrip()[: -len(FENCE)]
    lines = [first] if first else []
    while True:
        line = read_line("... ")
        if line.rstrip().endswith(FENCE):
            lines.append(line.rstrip()[: -len(FENCE)])
            return "\n".join(lines).strip("\n")
        lines.append(line)


class PlainTerminal:
    """Not a terminal: messages are lines of stdin, replies plain text on stdout (pipe-friendly);
    notices and errors go to stderr."""

    def read_message(self) -> str:
        return read_multiline(self._read_line)

    @staticmethod
    def _read_line(prompt: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def show_reply(self, stream: ReplyStream) -> None:
        with contextlib.closing(stream.deltas()) as deltas:
            for delta in deltas:
                sys.stdout.write(delta)
                sys.stdout.flush()
        sys.stdout.write("\n")

    def notice(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        print(f"error: {text}", file=sys.stderr, flush=True)


class RichTerminal:
    """A terminal: prompt_toolkit reads (history file, \"\"\" for several lines), rich shows the
    reply as Markdown while it streams."""

    def __init__(self, history_file: Path) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from rich.console import Console

        history_file.parent.mkdir(parents=True, exist_ok=True)
        self.prompt: PromptSession[str] = PromptSession(history=FileHistory(str(history_file)))
        self.console = Console(highlight=False)

    def read_message(self) -> str:
        return read_multiline(lambda prompt: self.prompt.prompt(prompt))

    def show_reply(self, stream: ReplyStream) -> None:
        from rich.live import Live
        from rich.markdown import Markdown

        live = Live(console=self.console, refresh_per_second=12, vertical_overflow="visible")
        with live, contextlib.closing(stream.deltas()) as deltas:
            for _ in deltas:
                live.update(Markdown(stream.text))

    def notice(self, text: str) -> None:
        self.console.print(text, style="dim", markup=False)

    def error(self, text: str) -> None:
        self.console.print(f"error: {text}", style="bold red", markup=False)

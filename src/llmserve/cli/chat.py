"""`llmserve chat`: the arguments and the read-reply loop."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from llmserve.chat.commands import EXIT_COMMANDS, CommandContext, CommandError, run_command
from llmserve.chat.session import ChatSession
from llmserve.chat.stream import ReplyStream
from llmserve.chat.terminal import ChatTerminal, PlainTerminal, RichTerminal
from llmserve.config import default_home
from llmserve.remote import (
    DEFAULT_BASE_URL,
    RemoteError,
    api_key_from,
    auth_headers,
    first_chat_model,
    server_root,
)


def add_chat_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `llmserve chat`."""
    parser = subparsers.add_parser(
        "chat", help="chat with a model of any OpenAI-compatible server in the terminal"
    )
    parser.add_argument(
        "--base-url",
        default=os.environ.get("LLMSERVE_BASE_URL", DEFAULT_BASE_URL),
        help="the server's root or /v1 URL (default: $LLMSERVE_BASE_URL or the local server)",
    )
    parser.add_argument("--api-key", help="default: $LLMSERVE_API_KEY, else $OPENAI_API_KEY")
    parser.add_argument("--model", help="default: the server's first chat model")
    parser.add_argument("--system", default="", help="a system prompt to start with")
    parser.add_argument(
        "--history", type=Path, help="input history file (default: $LLMSERVE_HOME/chat_history)"
    )
    parser.set_defaults(handler=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    """Chat until /exit, Ctrl+D or the end of stdin."""
    root = server_root(args.base_url)
    timeout = httpx.Timeout(None, connect=10.0)  # a reply may take long; a dead server may not
    with httpx.Client(headers=auth_headers(api_key_from(args.api_key)), timeout=timeout) as client:
        try:
            model = args.model or first_chat_model(client, root)
        except RemoteError as exc:
            print(f"llmserve chat: {exc} (start one with `llmserve serve`)", file=sys.stderr)
            return 1
        session = ChatSession(model=model, system=args.system)
        terminal = _terminal(args.history)
        if isinstance(terminal, RichTerminal):
            terminal.notice(f"llmserve chat · {model} at {root} · /help for commands")
        return chat_loop(session, terminal, CommandContext(client, root))


def _terminal(history: Path | None) -> ChatTerminal:
    if sys.stdin.isatty() and sys.stdout.isatty():
        return RichTerminal(history or default_home() / "chat_history")
    return PlainTerminal()


def chat_loop(session: ChatSession, terminal: ChatTerminal, context: CommandContext) -> int:
    """Read messages and commands until the user leaves; returns the exit code."""
    while True:
        try:
            line = terminal.read_message()
        except KeyboardInterrupt:
            terminal.notice("(Ctrl+D or /exit leaves)")
            continue
        except EOFError:
            return 0
        command = line.strip()
        if not command:
            continue
        if command.lower() in EXIT_COMMANDS:
            return 0
        if command.startswith("/"):
            _command(command, session, terminal, context)
        else:
            ask(line, session, terminal, context)


def _command(
    line: str, session: ChatSession, terminal: ChatTerminal, context: CommandContext
) -> None:
    try:
        terminal.notice(run_command(line, session, context))
    except CommandError as exc:
        terminal.error(str(exc))


def ask(text: str, session: ChatSession, terminal: ChatTerminal, context: CommandContext) -> None:
    """Send `text`, show the reply as it streams; Ctrl+C stops it and keeps what came."""
    session.messages.append({"role": "user", "content": text})
    stream = ReplyStream(context.client, context.root, session)
    try:
        terminal.show_reply(stream)
    except KeyboardInterrupt:
        terminal.notice("[stopped]")
    except RemoteError as exc:
        terminal.error(str(exc))
    if stream.text:
        session.messages.append({"role": "assistant", "content": stream.text})
    else:
        session.messages.pop()  # no reply: the next message takes this one's place
    stats = stream.stats()
    if stats is not None:
        session.last_stats = stats
        if session.show_stats:
            terminal.notice(stats.describe())

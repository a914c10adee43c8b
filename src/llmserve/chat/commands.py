"""The slash commands of `llmserve chat`; each returns the text to show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from llmserve.chat.session import SAMPLING_FIELDS, ChatSession
from llmserve.remote import RemoteError, model_ids

HELP = """Commands:
  /help                 this list
  /model [NAME]         show the model and the ones served, or switch to NAME
  /system [TEXT]        set the system prompt (no TEXT: remove it)
  /set [FIELD VALUE]    set a sampling field, e.g. /set temperature 0.2 (VALUE none: unset);
                        fields: {fields}
  /clear                forget the conversation (model, system prompt and fields stay)
  /save FILE            save the conversation and settings as JSON
  /load FILE            load a file written by /save
  /stats [on|off]       TTFT and tokens/s of the last reply; on: after every reply
  /exit                 leave (also /quit, /bye, Ctrl+D)
Start a message with \"\"\" to write several lines; end it with \"\"\".
Ctrl+C stops a reply and keeps the conversation."""
EXIT_COMMANDS = ("/exit", "/quit", "/bye")


@dataclass(frozen=True)
class CommandContext:
    """What commands may use besides the session."""

    client: httpx.Client
    root: str


class CommandError(ValueError):
    """A command used the wrong way; the message says how to use it."""


def help_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    return HELP.format(fields=", ".join(SAMPLING_FIELDS))


def model_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    try:
        served = model_ids(context.client, context.root)
    except RemoteError as exc:
        raise CommandError(str(exc)) from None
    if not argument:
        return f"model: {session.model}\nserved: {', '.join(served)}"
    if argument not in served:
        raise CommandError(f"the server has no model `{argument}`; served: {', '.join(served)}")
    session.model = argument
    return f"model: {argument}"


def system_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    session.system = argument
    return "system prompt set" if argument else "system prompt removed"


def set_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    if not argument:
        fields = ", ".join(f"{k}={v}" for k, v in session.sampling.items())
        return f"fields: {fields or 'server defaults'}"
    name, _, value = argument.partition(" ")
    try:
        return session.set_field(name, value.strip())
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def clear_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    session.messages.clear()
    return "conversation cleared"


def save_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    if not argument:
        raise CommandError("usage: /save FILE")
    try:
        session.save(Path(argument).expanduser())
    except OSError as exc:
        raise CommandError(f"cannot write {argument}: {exc.strerror}") from None
    return f"saved {len(session.messages)} messages to {argument}"


def load_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    if not argument:
        raise CommandError("usage: /load FILE")
    try:
        session.load(Path(argument).expanduser())
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return f"loaded {len(session.messages)} messages; model: {session.model}"


def stats_command(session: ChatSession, argument: str, context: CommandContext) -> str:
    if argument in ("on", "off"):
        session.show_stats = argument == "on"
        return f"stats after every reply: {argument}"
    if argument:
        raise CommandError("usage: /stats [on|off]")
    return session.last_stats.describe() if session.last_stats else "no reply yet"


COMMANDS: dict[str, Callable[[ChatSession, str, CommandContext], str]] = {
    "/help": help_command,
    "/?": help_command,
    "/model": model_command,
    "/system": system_command,
    "/set": set_command,
    "/clear": clear_command,
    "/save": save_command,
    "/load": load_command,
    "/stats": stats_command,
}


def run_command(line: str, session: ChatSession, context: CommandContext) -> str:
    """Run one `/command ARGUMENT` line; CommandError when it is unknown or misused."""
    name, _, argument = line.strip().partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        raise CommandError(f"unknown command {name}; /help lists them")
    return command(session, argument.strip(), context)

"""The `llmserve` command line. Thin: build a config, call the library.

One module per subcommand; each has an `add_<name>_parser(subparsers)` function that registers its
arguments and its handler (`handler=<function(args) -> exit code>`). Add yours to `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from llmserve import __version__
from llmserve.cli.batch import add_batch_parser
from llmserve.cli.bench import add_bench_parser
from llmserve.cli.canary import add_canary_parser
from llmserve.cli.chat import add_chat_parser
from llmserve.cli.db import add_db_parser
from llmserve.cli.keys import add_keys_parser
from llmserve.cli.models import add_models_parser, add_pull_parser
from llmserve.cli.serve import add_serve_parser

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_serve_parser,
    add_keys_parser,
    add_chat_parser,
    add_bench_parser,
    add_pull_parser,
    add_models_parser,
    add_canary_parser,
    add_batch_parser,
    add_db_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="llmserve", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"llmserve {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)

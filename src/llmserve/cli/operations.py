"""`llmserve serve`'s operations flags: logging, the start-up line, and running until drained."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmserve import __version__
from llmserve.config import ServerConfig
from llmserve.logs import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("llmserve.server")


def add_operations_arguments(parser: argparse.ArgumentParser) -> None:
    """--shutdown-timeout, --log-level, --log-format."""
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, how long requests in flight may take to finish (default 30)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="default info"
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="text (default) or json, one per line"
    )


def describe_models(config: ServerConfig) -> str:
    """`name (source, backend)` for every model."""
    return ", ".join(f"{m.name} ({m.source}, {m.backend})" for m in config.models)


def log_start(config: ServerConfig) -> None:
    """Configure logging and say at once what is being loaded."""
    configure_logging(config.log)
    logger.info(
        "llmserve %s starting on %s:%d; loading %s",
        __version__,
        config.host,
        config.port,
        describe_models(config),
    )


def run_until_drained(
    app: FastAPI,
    config: ServerConfig,
    sock: socket.socket | None,
    on_listening: Callable[[int], None],
) -> int:
    """Serve on `sock` until a signal has drained the server (see api/runner.py); the exit code."""
    from llmserve.api.runner import serve_app

    asyncio.run(serve_app(app, config, sock, on_listening))
    logger.info("stopped")
    return 0

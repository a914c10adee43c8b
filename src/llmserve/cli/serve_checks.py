"""Start-up checks of `llmserve serve`, run before torch loads.

Each mistake an operator can make at start (a model folder that is not there or is not a model,
a hub id that cannot be fetched, a port in use, a Redis that does not answer) becomes one
`StartupError` whose message says what is wrong and what to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import socket

from llmserve.auth.factory import open_key_store
from llmserve.auth.policy import check_bind_policy
from llmserve.auth.redis_limits import check_redis
from llmserve.config import BackendKind, ServerConfig
from llmserve.database.postgres import check_postgres
from llmserve.database.url import parse_database_url
from llmserve.models.source import ModelLoadError, check_model_source


class StartupError(ValueError):
    """`serve` cannot start; the message is one line for the operator."""


def check_serve(config: ServerConfig) -> socket.socket:
    """Run every start-up check; returns the socket bound to the server's address."""
    check_models(config)
    check_ray_installed(config)
    check_database(config)
    # NOTE: opening a PostgreSQL store migrates its schema (a newer one: SchemaTooNewError)
    with contextlib.closing(open_key_store(config.home, config.database)) as store:
        check_bind_policy(config.host, store.has_keys(), config.auth.no_auth)
    sock = bind_socket(config.host, config.port)
    try:
        if config.auth.redis_url is not None:
            check_redis(config.auth.redis_url)
    except ValueError as exc:
        sock.close()
        raise StartupError(str(exc)) from None
    return sock


def check_database(config: ServerConfig) -> None:
    """`--database` is a URL we understand, and a PostgreSQL one answers."""
    if config.database is None:
        return
    try:
        parsed = parse_database_url(config.database)
        if parsed.is_postgres:
            check_postgres(parsed.url)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def check_models(config: ServerConfig) -> None:
    """Every model served by the local engine has files that can load (each variant's too)."""
    for model in config.models:
        if model.backend != BackendKind.LOCAL:
            continue
        for loaded in model.variant_models or (model,):
            try:
                check_model_source(loaded)
            except ModelLoadError as exc:
                raise StartupError(str(exc)) from None


def check_ray_installed(config: ServerConfig) -> None:
    """The Ray runtime needs the optional `ray` extra."""
    if config.runtime == "ray" and importlib.util.find_spec("ray") is None:
        raise StartupError(
            "runtime: ray needs Ray Serve: install it with pip install 'llmserve[ray]' "
            "(or run without --ray / with runtime: local)"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` for uvicorn to listen on, bound now so a taken port is
    found before any model loads (and nobody can take it meanwhile)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # NOTE: asyncio sets TCP_NODELAY on accepted sockets only when proto is IPPROTO_TCP; with
    # proto 0 Nagle and delayed ACKs add ~40 ms to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use: stop the program listening there, "
                "or choose another port with --port"
            ) from None
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): check --host and --port"
        ) from None
    return sock

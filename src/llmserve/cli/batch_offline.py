"""`llmserve batch run FILE -o OUT --model M`: a batch file through a local model, no server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from llmserve.bench.runner import progress_bar
from llmserve.config import ModelConfig, ServerConfig, load_config_file
from llmserve.errors import LlmserveError


def add_run_parser(commands: Any) -> None:
    """Register `llmserve batch run`."""
    run: argparse.ArgumentParser = commands.add_parser(
        "run", help="run a batch file offline through a local model (re-run to resume)"
    )
    run.add_argument("file", type=Path)
    run.add_argument("-o", "--output", type=Path, required=True, help="results (JSONL)")
    run.add_argument("--model", required=True, help="a local folder, hub id or built-in name")
    run.add_argument("--config", help="a llmserve.yaml for engine settings and home")
    run.add_argument("--max-concurrency", type=int, default=64)
    run.set_defaults(handler=run_offline_batch)


def run_offline_batch(args: argparse.Namespace) -> int:
    """Load the model, run the pending lines with a progress bar, append to the output."""
    if not args.file.is_file():
        print(f"llmserve batch run: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except (LlmserveError, ValueError) as exc:
        print(f"llmserve batch run: {exc}", file=sys.stderr)
        return 1


def offline_config(model_name: str, config_path: str | None) -> ServerConfig:
    """One model: the config file's model of that name (else `model_name` as its source)."""
    model = ModelConfig(name=model_name, source=model_name)
    if config_path is None:
        return ServerConfig(models=(model,))
    base = load_config_file(config_path)
    named = [m for m in base.models if m.name == model_name]
    return dataclasses.replace(base, models=(named[0] if named else model,))


async def _run(args: argparse.Namespace) -> int:
    from llmserve.backends.factory import build_backend
    from llmserve.jobs.offline import done_custom_ids, pending_lines, run_offline

    server = offline_config(args.model, args.config)
    model = server.models[0]
    num_pending = len(pending_lines(args.file, done_custom_ids(args.output)))
    backend = build_backend(model, server)
    await backend.start()
    try:
        with progress_bar(Console(stderr=True), disabled=False) as progress:
            task = progress.add_task("lines", total=num_pending)
            ran = await run_offline(
                args.file, args.output, backend,
                max_concurrency=args.max_concurrency, on_done=lambda: progress.advance(task),
            )  # fmt: skip
    finally:
        await backend.shutdown()
    print(f"{ran} lines run; results in {args.output}")
    return 0

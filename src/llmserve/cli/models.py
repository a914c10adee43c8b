"""`llmserve pull` and `llmserve models`: bring hub models into the cache and list what is there."""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from llmserve.config import default_home
from llmserve.models.pull import (
    PullError,
    cached_models,
    folder_size,
    hub_cache,
    human_size,
    pull_model,
)
from llmserve.remote import (
    DEFAULT_BASE_URL,
    RemoteError,
    api_key_from,
    auth_headers,
    model_ids,
    server_root,
)


def add_pull_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `llmserve pull`."""
    parser = subparsers.add_parser(
        "pull", help="download a Hugging Face hub model into the cache (HF_HOME)"
    )
    parser.add_argument("model", help="a hub id such as ORG/NAME")
    parser.add_argument("--revision", help="a branch, tag or commit (default: main)")
    parser.add_argument("--token", help="a hub token (default: HF_TOKEN or the saved login)")
    parser.set_defaults(handler=run_pull)


def add_models_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `llmserve models`."""
    parser = subparsers.add_parser("models", help="list cached models and the served ones")
    parser.add_argument(
        "--base-url",
        default=os.environ.get("LLMSERVE_BASE_URL", DEFAULT_BASE_URL),
        help="the server whose models to list (its root or /v1 URL)",
    )
    parser.add_argument("--api-key", help="default: $LLMSERVE_API_KEY, else $OPENAI_API_KEY")
    parser.set_defaults(handler=run_models)


def run_pull(args: argparse.Namespace) -> int:
    """Download the model; one line on stderr and exit 1 when it cannot be had."""
    try:
        path = pull_model(args.model, args.revision, args.token)
    except PullError as exc:
        print(f"llmserve pull: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model} is in the cache: {path} ({human_size(folder_size(path))})")
    print(f"serve it with: llmserve serve --model {args.model}")
    return 0


def _table(rows: list[tuple[str, str, str]]) -> list[str]:
    width = max(len(row[0]) for row in rows)
    return [f"  {name:<{width}}  {size:>9}  {where}" for name, size, where in rows]


def cached_lines() -> list[str]:
    """The Hugging Face cache and llmserve's built models, with sizes."""
    lines = [f"cached ({hub_cache()}):"]
    rows = [
        (m.repo_id, human_size(m.size_bytes), ", ".join(m.refs) or "(commit only)")
        for m in cached_models()
    ]
    lines += _table(rows) if rows else ["  (none)"]
    built = default_home() / "models"
    folders = sorted(p for p in built.iterdir() if p.is_dir()) if built.is_dir() else []
    built_rows = [
        (p.name.replace("--", "/"), human_size(folder_size(p)), "built in") for p in folders
    ]
    lines += [f"built ({built}):"] + (_table(built_rows) if built_rows else ["  (none)"])
    return lines


def served_lines(base_url: str, api_key: str | None) -> list[str]:
    """The models a running server lists, or why none could be listed."""
    root = server_root(base_url)
    try:
        with httpx.Client(headers=auth_headers(api_key_from(api_key)), timeout=10) as client:
            ids = model_ids(client, root)
    except RemoteError:
        return [f"served ({root}): no server answers there"]
    return [f"served ({root}):"] + [f"  {model_id}" for model_id in ids]


def run_models(args: argparse.Namespace) -> int:
    """Print the cached, built and served models."""
    print("\n".join(cached_lines() + served_lines(args.base_url, args.api_key)))
    return 0

"""`llmserve batch`: the Batch API from the terminal, and offline batch runs.

`submit` uploads a JSONL file, creates the batch and, with `--wait`, shows a live progress bar
of its `request_counts` and downloads the results. `list`, `status`, `cancel` and `download` work
on any batch of the key. `run` runs a file offline through a local model (resumable).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from llmserve.bench.runner import progress_bar
from llmserve.remote import (
    DEFAULT_BASE_URL,
    RemoteError,
    api_key_from,
    auth_headers,
    describe_error,
    server_root,
)
from llmserve.statuses import ENDED_BATCH_STATUSES

POLL_S = 0.5


def add_batch_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `llmserve batch` and its subcommands."""
    parser = subparsers.add_parser("batch", help="submit, follow and download Batch API jobs")
    commands = parser.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    submit = _remote(commands, "submit", "upload a JSONL file and create a batch")
    submit.add_argument("file", type=Path)
    submit.add_argument("--endpoint", default="/v1/chat/completions")
    submit.add_argument("--wait", action="store_true", help="follow progress, then download")
    submit.add_argument("-o", "--output", type=Path, help="where --wait writes the results")
    submit.set_defaults(handler=run_submit)
    _remote(commands, "list", "the key's batches, newest first").set_defaults(handler=run_list)
    for name, handler, text in (
        ("status", run_status, "one batch's status and request counts"),
        ("cancel", run_cancel, "cancel a batch (its finished lines are kept)"),
        ("download", run_download, "download a batch's output and error files"),
    ):
        command = _remote(commands, name, text)
        command.add_argument("batch_id")
        if name == "download":
            command.add_argument("-o", "--output", type=Path, help="the output file's path")
        command.set_defaults(handler=handler)
    from llmserve.cli.batch_offline import add_run_parser

    add_run_parser(commands)


def _remote(commands: Any, name: str, text: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=text)
    command.add_argument(
        "--base-url",
        default=os.environ.get("LLMSERVE_BASE_URL", DEFAULT_BASE_URL),
        help="the server's root or /v1 URL (default: $LLMSERVE_BASE_URL or the local server)",
    )
    command.add_argument("--api-key", help="default: $LLMSERVE_API_KEY, else $OPENAI_API_KEY")
    return command


class BatchClient:
    """The Files and Batch API of one server, for one key."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.root = server_root(args.base_url) + "/v1"
        headers = auth_headers(api_key_from(args.api_key))
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(60.0, connect=10.0))

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, self.root + path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.root}: {exc}") from None
        if response.status_code != 200:
            raise RemoteError(f"{method} {path} answered {describe_error(response)}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.call(method, path, **kwargs).json()
        return body

    def download(self, file_id: str, path: Path) -> None:
        path.write_bytes(self.call("GET", f"/files/{file_id}/content").content)


def _run(args: argparse.Namespace, action: Any) -> int:
    client = BatchClient(args)
    try:
        code: int = action(client, args)
        return code
    except RemoteError as exc:
        print(f"llmserve batch: {exc}", file=sys.stderr)
        return 1
    finally:
        client.http.close()


def run_submit(args: argparse.Namespace) -> int:
    return _run(args, submit)


def submit(client: BatchClient, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise RemoteError(f"no such file: {args.file}")
    with args.file.open("rb") as source:
        files = {"file": (args.file.name, source, "application/jsonl")}
        uploaded = client.json("POST", "/files", files=files, data={"purpose": "batch"})
    batch = client.json(
        "POST",
        "/batches",
        json={
            "input_file_id": uploaded["id"],
            "endpoint": args.endpoint,
            "completion_window": "24h",
        },
    )
    print(f"batch {batch['id']} created from {args.file} ({uploaded['id']})", flush=True)
    if not args.wait:
        return 0
    final = follow(client, batch["id"])
    return save_results(client, final, args.output)


def follow(client: BatchClient, batch_id: str) -> dict[str, Any]:
    """Poll the batch with a live bar of its request counts until it ends."""
    console = Console(stderr=True)
    with progress_bar(console, disabled=False) as progress:
        task = progress.add_task("validating", total=None)
        while True:
            batch = client.json("GET", f"/batches/{batch_id}")
            counts = batch["request_counts"]
            progress.update(
                task,
                description=batch["status"],
                total=counts["total"] or None,
                completed=counts["completed"] + counts["failed"],
            )
            if batch["status"] in ENDED_BATCH_STATUSES:
                return batch
            time.sleep(POLL_S)


def save_results(client: BatchClient, batch: dict[str, Any], output: Path | None) -> int:
    """Download the output and error files; 0 when the batch completed."""
    counts = batch["request_counts"]
    print(
        f"batch {batch['id']} {batch['status']}: {counts['completed']} completed, "
        f"{counts['failed']} failed of {counts['total']}"
    )
    for entry in (batch.get("errors") or {}).get("data", []):
        print(f"  line {entry['line']}: {entry['code']}: {entry['message']}")
    output = output or Path(f"{batch['id']}_output.jsonl")
    if batch.get("output_file_id"):
        client.download(batch["output_file_id"], output)
        print(f"output: {output}")
    if batch.get("error_file_id"):
        errors = output.with_name(output.stem + "_errors.jsonl")
        client.download(batch["error_file_id"], errors)
        print(f"errors: {errors}")
    return 0 if batch["status"] == "completed" else 1


def run_list(args: argparse.Namespace) -> int:
    def action(client: BatchClient, _: argparse.Namespace) -> int:
        for batch in client.json("GET", "/batches", params={"limit": 100})["data"]:
            print(_summary(batch))
        return 0

    return _run(args, action)


def run_status(args: argparse.Namespace) -> int:
    return _run(args, lambda c, a: _print(_summary(c.json("GET", f"/batches/{a.batch_id}"))))


def run_cancel(args: argparse.Namespace) -> int:
    path = f"/batches/{args.batch_id}/cancel"
    return _run(args, lambda c, a: _print(_summary(c.json("POST", path))))


def run_download(args: argparse.Namespace) -> int:
    def action(client: BatchClient, args: argparse.Namespace) -> int:
        batch = client.json("GET", f"/batches/{args.batch_id}")
        if batch["status"] not in ENDED_BATCH_STATUSES:
            raise RemoteError(f"batch {args.batch_id} is still {batch['status']}")
        return save_results(client, batch, args.output)

    return _run(args, action)


def _summary(batch: dict[str, Any]) -> str:
    counts = batch["request_counts"]
    done = counts["completed"] + counts["failed"]
    return (
        f"{batch['id']}  {batch['status']:<11} {done}/{counts['total']} "
        f"({counts['failed']} failed)  {batch['endpoint']}"
    )


def _print(text: str) -> int:
    print(text)
    return 0

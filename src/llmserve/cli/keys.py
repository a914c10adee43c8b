"""`llmserve keys`: create, list, revoke API keys and show usage, on the local key store."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from llmserve.auth.factory import open_key_store
from llmserve.auth.key_store import KeyStore
from llmserve.auth.keys import (
    KeySpec,
    KeySpecError,
    describe_key,
    parse_duration,
    parse_models,
)
from llmserve.auth.store import (
    DuplicateKeyNameError,
    UnknownKeyError,
    describe_usage,
)
from llmserve.config import AuthConfig, default_database, default_home
from llmserve.database.postgres import check_postgres
from llmserve.database.url import parse_database_url
from llmserve.jobs.revocation import cancel_jobs_of


def add_keys_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmserve keys`: register it and its subcommands on the CLI's subparsers."""
    home = argparse.ArgumentParser(add_help=False)  # --home before or after the action
    home.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="llmserve home")
    home.add_argument(
        "--database",
        default=argparse.SUPPRESS,
        help="the server's --database (sqlite:///PATH or postgresql://…; default: "
        "LLMSERVE_DATABASE_URL, else the home's SQLite file)",
    )
    keys = subparsers.add_parser(
        "keys", parents=[home], help="manage API keys and show their usage"
    )
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", parents=[home], help="make a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--max-concurrency", type=int, default=None, metavar="N")
    create.add_argument("--models", default=None, help="comma-separated; default: every model")
    create.add_argument("--rpm", type=int, default=None, metavar="N", help="requests per minute")
    create.add_argument("--tpm", type=int, default=None, metavar="N", help="tokens per minute")
    create.add_argument("--expires", default=None, help="lifetime such as 30d, 12h, 90m")
    create.add_argument(
        "--cache-group",
        default=None,
        metavar="GROUP",
        help="share the prefix cache with keys of this group (default: the key's own)",
    )
    create.add_argument(
        "--max-storage-mb",
        type=int,
        default=None,
        metavar="N",
        help="MB of files the key may keep (default: the server's jobs.max_storage_mb_per_key)",
    )
    for name, help_text in (("list", "list keys"), ("usage", "usage per key and model")):
        action = actions.add_parser(name, parents=[home], help=help_text)
        action.add_argument("--json", action="store_true", help="print JSON")
        if name == "usage":
            action.add_argument("name", nargs="?", default=None)
    revoke = actions.add_parser(
        "revoke", parents=[home], help="revoke a key: its next request gets 401"
    )
    revoke.add_argument("name")
    keys.set_defaults(handler=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    """Run one `keys` subcommand; returns the exit status."""
    home = getattr(args, "home", None) or default_home()
    database = getattr(args, "database", None) or default_database()
    try:
        store = open_store(home, database)
    except ValueError as exc:
        print(f"llmserve keys: error: {exc}", file=sys.stderr)
        return 2
    try:
        command = args.keys_command
        if command == "create":
            return _create(store, args)
        if command == "revoke":
            return _revoke(store, args.name, home, database)
        if command == "list":
            return _list(store, as_json=args.json)
        return _usage(store, args.name, as_json=args.json)
    finally:
        store.close()


def open_store(home: Path, database: str | None) -> KeyStore:
    """The key store `serve` would use; a database that does not answer is a ValueError."""
    if database is not None and parse_database_url(database).is_postgres:
        check_postgres(database)
    return open_key_store(home, database)


def key_spec(args: argparse.Namespace) -> KeySpec:
    """The key `keys create` asks for; KeySpecError names the flag that is wrong."""
    try:
        expires_in_s = None if args.expires is None else parse_duration(args.expires)
    except ValueError as exc:
        raise KeySpecError("expires", str(exc)) from None
    max_concurrency = args.max_concurrency
    return KeySpec(
        name=args.name,
        max_concurrency=(
            AuthConfig().default_max_concurrency if max_concurrency is None else max_concurrency
        ),
        allowed_models=parse_models(args.models),
        rpm=args.rpm,
        tpm=args.tpm,
        expires_in_s=expires_in_s,
        cache_group=args.cache_group,
        max_storage_mb=args.max_storage_mb,
    )


def _create(store: KeyStore, args: argparse.Namespace) -> int:
    try:
        key, secret = store.create_key(key_spec(args))
    except KeySpecError as exc:
        return _fail(f"--{exc.field.replace('_', '-')}: {exc.problem}")
    except DuplicateKeyNameError as exc:
        return _fail(str(exc))
    print(f"Created key {key.name!r} ({key.key_id}). It is shown only once:", file=sys.stderr)
    print(secret)
    return 0


def _fail(message: str) -> int:
    """One line on stderr; exit status 2 (a usage error, as argparse's)."""
    print(f"llmserve keys create: error: {message}", file=sys.stderr)
    return 2


def _revoke(store: KeyStore, name: str, home: Path, database: str | None) -> int:
    try:
        key = store.revoke(name)
    except UnknownKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    batches, responses = cancel_jobs_of(home, key.key_id, database)
    print(f"Revoked key {key.name!r} ({key.key_id}).")
    if batches or responses:
        print(f"Cancelled its {batches} unfinished batches and {responses} background responses.")
    return 0


def _list(store: KeyStore, *, as_json: bool) -> int:
    keys = store.list_keys()
    if as_json:
        print(json.dumps([describe_key(key) for key in keys], indent=2))
        return 0
    header: tuple[str, ...] = ("NAME", "STATUS", "ID", "KEY", "MAX_CONC", "RPM", "TPM", "MODELS")
    header += ("EXPIRES", "CACHE_GROUP", "STORAGE_MB")
    rows = [
        (k.name, k.status(), k.key_id, k.hint, k.max_concurrency, k.rpm or "-", k.tpm or "-",
         ",".join(sorted(k.allowed_models or ["*"])), _date(k.expires_at), k.cache_group or "-",
         k.max_storage_mb or "default")
        for k in keys
    ]  # fmt: skip
    _print_table(header, rows)
    return 0


def _usage(store: KeyStore, name: str | None, *, as_json: bool) -> int:
    rows = store.usage(name)
    if as_json:
        print(json.dumps([describe_usage(row) for row in rows], indent=2))
        return 0
    header = ("KEY", "MODEL", "REQUESTS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "ERRORS")
    table = [
        (r.key_name, r.model, r.requests, r.prompt_tokens, r.completion_tokens, r.errors,
         r.rejections)
        for r in rows
    ]  # fmt: skip
    _print_table((*header, "REJECTED"), table)
    return 0


def _date(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(header)] + [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )

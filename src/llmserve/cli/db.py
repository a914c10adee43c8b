"""`llmserve db copy --to postgresql://…`: move a home's SQLite state into PostgreSQL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmserve.auth.factory import key_store_path
from llmserve.auth.store import SqliteKeyStore
from llmserve.config import default_home
from llmserve.database.postgres import check_postgres
from llmserve.database.sqlite_copy import copy_home
from llmserve.database.url import parse_database_url, redacted
from llmserve.jobs.service import job_store_path
from llmserve.jobs.sqlite_store import SqliteJobStore

EXIT_USAGE = 2


def add_db_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmserve db`: the database's own commands."""
    db = subparsers.add_parser("db", help="move state between SQLite and PostgreSQL")
    actions = db.add_subparsers(dest="db_command", required=True)
    copy = actions.add_parser(
        "copy",
        help="copy a home's keys, usage, files, batches and responses into PostgreSQL",
    )
    copy.add_argument(
        "--home", type=Path, default=None, help="llmserve home (default: $LLMSERVE_HOME)"
    )
    copy.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://USER:PASSWORD@HOST:PORT/DB"
    )
    db.set_defaults(handler=run_db)


def run_db(args: argparse.Namespace) -> int:
    """`db copy`: one summary line per table copied; one error line and exit 2 otherwise."""
    home: Path = args.home or default_home()
    try:
        if not parse_database_url(args.to).is_postgres:
            raise ValueError("--to must be a postgresql://USER:PASSWORD@HOST:PORT/DB URL")
        check_postgres(args.to)
        upgrade_sqlite_schemas(home)
        counts = copy_home(key_store_path(home), job_store_path(home), args.to)
    except ValueError as exc:  # unreachable, not empty, a wrong URL, a newer schema
        print(f"llmserve db copy: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Copied {home} into {redacted(args.to)}:")
    for table, num_rows in counts.table_to_rows.items():
        print(f"  {table}: {num_rows}")
    return 0


def upgrade_sqlite_schemas(home: Path) -> None:
    """Open the home's stores once, so older files get the columns the copy reads."""
    if key_store_path(home).exists():
        SqliteKeyStore(key_store_path(home)).close()
    if job_store_path(home).exists():
        SqliteJobStore(job_store_path(home)).close()

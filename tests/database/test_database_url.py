"""`--database` values: sqlite:///PATH names one file for keys and jobs; URLs are checked and
passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserve.auth.factory import open_key_store
from llmserve.auth.keys import KeySpec
from llmserve.config import ModelConfig, ServerConfig
from llmserve.database.url import parse_database_url, redacted
from llmserve.jobs.open_store import open_job_store
from llmserve.jobs.store import BatchRecord


def test_sqlite_url_names_one_file_for_keys_and_jobs(tmp_path: Path) -> None:
    path = tmp_path / "state" / "llmserve.sqlite"
    url = f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/...
    keys = open_key_store(tmp_path / "home", url)
    keys.create_key(KeySpec("file-key"))
    keys.close()
    jobs = open_job_store(tmp_path / "home", url)
    jobs.add_batch(BatchRecord("batch_1", "owner", "completed", 0, {}))
    jobs.close()
    assert path.exists()
    assert not (tmp_path / "home" / "llmserve.db").exists()  # nothing in the home
    reopened = open_key_store(tmp_path / "elsewhere", url)
    assert [k.name for k in reopened.list_keys()] == ["file-key"]
    reopened.close()


def test_urls_are_parsed_and_redacted() -> None:
    parsed = parse_database_url("postgresql://me:s3cret@db.internal:5432/llmserve")
    assert parsed.is_postgres
    assert redacted(parsed.url) == "postgresql://me:***@db.internal:5432/llmserve"
    assert parse_database_url("sqlite:///relative.db").sqlite_path == Path("relative.db")
    with pytest.raises(ValueError, match="database must be sqlite:///PATH or postgresql://") as err:
        parse_database_url("postgresql://me:s3cret@db.internal:5432")  # no database name
    assert "s3cret" not in str(err.value)


def test_config_refuses_another_kind_of_url() -> None:
    models = (ModelConfig("m", source="fake", backend="fake"),)
    with pytest.raises(ValueError, match="database must be sqlite:///PATH or postgresql://"):
        ServerConfig(models=models, database="mysql://root@localhost/db")


def test_database_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSERVE_DATABASE_URL", "postgresql://u:p@h:5432/d")
    models = (ModelConfig("m", source="fake", backend="fake"),)
    assert ServerConfig(models=models).database == "postgresql://u:p@h:5432/d"

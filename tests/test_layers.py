"""The import directions of docs/architecture.md: a lower floor never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "llmserve"

# For each folder, the llmserve folders it must never import (directly, at any depth of the file).
FORBIDDEN = {
    "engine": {"api", "serving", "backends", "auth", "jobs", "cli", "cluster", "web", "bench"},
    "models": {"api", "serving", "backends", "auth", "engine", "jobs", "cli", "cluster"},
    "auth": {"api", "serving", "backends", "engine", "models", "jobs", "cli", "cluster"},
    "structured": {"api", "serving", "backends", "auth", "jobs", "cli", "cluster"},
    "backends": {"api", "serving", "auth", "jobs", "cli", "cluster"},
    "serving": {"api", "cli", "cluster"},
    "jobs": {"api", "cli", "cluster"},
    "api": {"cli", "cluster", "engine"},
    "cluster": {"cli"},
    # Issue 21: the database floor (PostgreSQL pool, migrations, db copy) knows only the root.
    "database": {
        "api",
        "serving",
        "backends",
        "auth",
        "engine",
        "models",
        "jobs",
        "cli",
        "cluster",
    },
}
# Modules at the package root are the shared vocabulary: they import no folder at all.
ROOT_MODULES = ("types.py", "sampling.py", "errors.py", "config.py", "scale_config.py")


def imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def imported_folders(path: Path) -> set[str]:
    """The llmserve sub-packages or modules `path` imports."""
    return {name.split(".")[1] for name in imported_names(path) if name.startswith("llmserve.")}


def python_files(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_never_imports_a_higher_floor(folder: str) -> None:
    violations = [
        f"{path.relative_to(PACKAGE)} imports llmserve.{name}"
        for path in python_files(folder)
        for name in sorted(imported_folders(path) & FORBIDDEN[folder])
    ]
    assert violations == []


@pytest.mark.parametrize("module", ROOT_MODULES)
def test_root_vocabulary_imports_no_folder(module: str) -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert imported_folders(PACKAGE / module) & folders == set()


def test_serving_knows_no_http_framework() -> None:
    web_imports = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in python_files("serving")
        for name in imported_names(path)
        if name.split(".")[0] in {"fastapi", "starlette", "uvicorn"}
    ]
    assert web_imports == []


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from llmserve.api.app import create_app\nimport llmserve.backends.base\n")
    assert imported_folders(module) == {"api", "backends"}

"""The import directions of docs/architecture.md: every row of its map, checked on the code.

`ALLOWED` is the map's last column: what each folder or root module may import of llmserve. A
row of the map without a rule here, or a folder or module of the package without a row, fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "llmserve"
MAP = ROOT / "docs" / "architecture.md"

VOCABULARY = frozenset({"types", "sampling", "errors", "config", "scale_config", "ids", "statuses"})
ROOT_MODULES = VOCABULARY | {"metrics", "logs", "remote"}
SERVED = ROOT_MODULES | {"models", "structured", "engine", "database", "auth", "backends"}
SERVED |= {"serving", "jobs"}
# What each folder or root module may import of llmserve (besides itself), as the map says.
ALLOWED: dict[str, frozenset[str]] = {
    "types": frozenset({"sampling"}),
    "sampling": frozenset(),
    "errors": frozenset(),
    "config": frozenset({"scale_config"}),
    "scale_config": frozenset(),
    "ids": frozenset(),
    "statuses": frozenset(),
    "metrics": ROOT_MODULES,
    "logs": ROOT_MODULES,
    "models": VOCABULARY,
    "structured": VOCABULARY,
    "engine": VOCABULARY | {"models", "structured"},
    "database": VOCABULARY,
    "auth": VOCABULARY | {"database"},
    "backends": VOCABULARY | {"models", "engine", "structured"},
    "serving": VOCABULARY | {"models", "auth", "backends", "structured"},
    "jobs": VOCABULARY | {"models", "auth", "backends", "serving", "database"},
    "api": SERVED - {"engine"},
    "web": frozenset(),  # static files: no Python
    "chat": ROOT_MODULES,
    "bench": ROOT_MODULES,
    "remote": ROOT_MODULES,
    "cluster": SERVED | {"api"},
    "cli": SERVED | {"api", "cluster", "chat", "bench"},
}
ALLOWED["__main__"] = ALLOWED["cli"] | {"cli"}  # `python -m llmserve`: the CLI
# Floors that may see only the `Backend` protocol of backends/, never an implementation.
PROTOCOL_ONLY = ("serving", "jobs")


def imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports (a relative import is named with its dots)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def imported_units(path: Path) -> set[str]:
    """The llmserve folders and root modules `path` imports (`llmserve` alone: its version)."""
    return {name.split(".")[1] for name in imported_names(path) if name.startswith("llmserve.")}


def unit_files(unit: str) -> list[Path]:
    """The Python files of a folder, or the one file of a root module."""
    folder = PACKAGE / unit
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{unit}.py"]


def package_units() -> set[str]:
    """Every folder and root module of the package (not `__init__`)."""
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return folders | modules


def map_units() -> set[str]:
    """The folders and modules named in the first column of the map's table of floors."""
    floors = MAP.read_text(encoding="utf-8").split("## The floors")[1].split("\n## ")[0]
    rows = [line.split("|")[1] for line in floors.splitlines() if line.startswith("| `")]
    return {name.removesuffix("/").removesuffix(".py") for row in rows
            for name in re.findall(r"`([^`]+)`", row)}  # fmt: skip


def test_every_row_of_the_map_has_a_rule() -> None:
    assert map_units() - set(ALLOWED) == set()


def test_every_folder_and_root_module_is_on_the_map() -> None:
    assert package_units() - map_units() == set()


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_follow_the_map(unit: str) -> None:
    violations = [
        f"{path.relative_to(PACKAGE)} imports llmserve.{name}"
        for path in unit_files(unit)
        if path.exists()
        for name in sorted(imported_units(path) - ALLOWED[unit] - {unit})
    ]
    assert violations == []


@pytest.mark.parametrize("unit", PROTOCOL_ONLY)
def test_floor_sees_only_the_backend_protocol(unit: str) -> None:
    reaches = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in unit_files(unit)
        for name in sorted(imported_names(path))
        if name.startswith("llmserve.backends") and name != "llmserve.backends.base"
    ]
    assert reaches == []


def test_no_relative_imports() -> None:
    relative = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in imported_names(path)
        if name.startswith(".")
    ]
    assert relative == []


def test_serving_knows_no_http_framework() -> None:
    web_imports = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in unit_files("serving")
        for name in imported_names(path)
        if name.split(".")[0] in {"fastapi", "starlette", "uvicorn"}
    ]
    assert web_imports == []


def test_no_route_imports_another_route() -> None:
    route_imports = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted((PACKAGE / "api" / "routes").glob("*.py"))
        for name in imported_names(path)
        if name.startswith("llmserve.api.routes")
    ]
    assert route_imports == []


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from llmserve.api.app import create_app\nimport llmserve.backends.base\n")
    assert imported_units(module) == {"api", "backends"}
    assert imported_units(module) - ALLOWED["serving"] == {"api"}


def test_api_is_grouped_in_packages() -> None:
    loose = {p.stem for p in (PACKAGE / "api").glob("*.py")} - {
        "__init__",
        "app",
        "runner",
        "startup",
    }
    assert loose == set()  # new helpers go into api/admission/, api/http/ or api/access/


BACKEND_CLASSES = {"LocalBackend", "EncoderBackend", "FakeBackend", "RayHandleBackend",
                   "VariantBackend"}  # fmt: skip
# What code outside backends/ may import from it: the protocol, the factory, the canary board
# protocol and the embedding-config check; never an implementation (built by the factory).
BACKENDS_SEEN_OUTSIDE = {"base", "factory", "canary", "encoder_config"}


def constructed_names(path: Path) -> set[str]:
    """The names `path` calls (`X(...)` and `X.from_config(...)` both name X)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func.value if isinstance(node.func, ast.Attribute) else node.func
            if isinstance(func, ast.Name):
                names.add(func.id)
    return names


def test_backends_are_built_only_by_the_factory() -> None:
    builders = [
        f"{path.relative_to(PACKAGE)} builds {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "backends" / "factory.py"
        for name in sorted(constructed_names(path) & BACKEND_CLASSES)
    ]
    assert builders == []


def test_no_backend_implementation_is_seen_outside_backends() -> None:
    seen = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "backends" not in path.relative_to(PACKAGE).parts
        for name in sorted(imported_names(path))
        if name.startswith("llmserve.backends.") and name.split(".")[2] not in BACKENDS_SEEN_OUTSIDE
    ]
    assert seen == []

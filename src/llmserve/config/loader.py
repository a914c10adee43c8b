"""`load_config_file`: a `ServerConfig` from YAML (and command-line overrides), every mistake
reported with its field path and what is allowed.

The loader reads the dataclasses' own type hints, so a new field needs no code here.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from llmserve.config.sections import BUILTIN_CHAT_MODEL, ServerConfig

# Fields that moved: their old spelling is refused with the new one named.
RENAMED_FIELDS = {
    "auth.state": "auth.limit_store ('in-process' or a redis:// URL)",
    "auth.max_queue": "limits.max_queue",
    "auth.request_timeout_s": "limits.request_timeout_s",
}


class ConfigError(ValueError):
    """A config file with mistakes; `problems` lists each as "field.path: what is wrong"."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {source}:\n{lines}")


def load_config_file(
    path: str | Path, overrides: Mapping[str, object] | None = None
) -> ServerConfig:
    """A `ServerConfig` from YAML; raises `ConfigError` naming every wrong field.

    `overrides` (the file's shape, e.g. `{"auth": {"limit_store": "redis://..."}}`: the command
    line's flags) replace fields of the file before anything is validated, so that every rule
    sees the final values. `models` may be left out: the built-in chat model is then served.
    """
    return build_config(_merged(read_config_data(path), overrides or {}), str(path))


def read_config_data(path: str | Path) -> object:
    """The YAML document of `path` ({} when empty); `ConfigError` when unreadable."""
    import yaml  # NOTE: imported here so that importing config stays cheap

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    return {} if data is None else data


def build_config(data: object, source: str) -> ServerConfig:
    """A `ServerConfig` from a parsed document; `ConfigError` naming `source` and every problem."""
    if isinstance(data, dict) and "models" not in data:
        data = {**data, "models": [{"name": BUILTIN_CHAT_MODEL, "source": BUILTIN_CHAT_MODEL}]}
    problems: list[str] = []
    config = _build(ServerConfig, data, "", problems)
    if problems or not isinstance(config, ServerConfig):
        raise ConfigError(source, problems or ["not a server config"])
    return config


def _merged(data: object, overrides: Mapping[str, object]) -> object:
    """`data` with `overrides` written over it, section by section."""
    if not isinstance(data, dict):
        return data  # not a mapping: _build reports it
    merged = dict(data)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type, data: object, path: str, problems: list[str]) -> object:
    """An instance of dataclass `cls` from a mapping, recording problems instead of raising."""
    where = path or "the top level"
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping of fields, got {_kind(data)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    num_before = len(problems)
    for key in data:
        where_key = _join(path, str(key))
        if where_key in RENAMED_FIELDS:
            problems.append(f"{where_key}: this field moved; use {RENAMED_FIELDS[where_key]}")
        elif key not in fields:
            problems.append(f"{where_key}: unknown field; allowed: {', '.join(fields)}")
    kwargs: dict[str, object] = {}
    for name, spec in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name), problems)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            problems.append(f"{_join(path, name)}: required")
    if len(problems) > num_before:
        return None
    try:
        return cls(**kwargs)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _convert(hint: object, value: object, path: str, problems: list[str]) -> object:
    """`value` checked against the type `hint`; a problem is recorded when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):  # allowed as its values
        origin, args = Literal, tuple(member.value for member in hint)
    if origin is Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        problems.append(f"{path}: {value!r} is not allowed; allowed: {allowed}")
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_convert(args[0], v, f"{path}.{i}", problems) for i, v in enumerate(value))
        problems.append(f"{path}: expected a list, got {_kind(value)}")
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, path, problems)
    elif hint is Path:
        if isinstance(value, str):
            return Path(value).expanduser()
        problems.append(f"{path}: expected a path (text), got {_kind(value)}")
    elif _fits(hint, value):
        return float(value) if hint is float else value  # type: ignore[arg-type]
    else:
        problems.append(f"{path}: expected {_NAMES.get(hint, str(hint))}, got {_kind(value)}")
    return None


_NAMES: dict[object, str] = {
    int: "an integer",
    float: "a number",
    str: "text",
    bool: "true or false",
}


def _fits(hint: object, value: object) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: f"text {value!r}", bool: f"{value}"}.get(
        type(value), repr(value)
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name

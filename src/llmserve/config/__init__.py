"""Server configuration: frozen dataclasses per section (`sections.py`, the scale-out ones in
`scale_config.py`) and the YAML loader (`loader.py`). Import every name from here.
"""

from __future__ import annotations

from llmserve.config.loader import RENAMED_FIELDS, ConfigError, build_config, load_config_file
from llmserve.config.sections import (
    BUILTIN_CHAT_MODEL,
    BUILTIN_EMBEDDING_MODEL,
    IN_PROCESS,
    TOOL_CALL_PARSERS,
    AuthConfig,
    AutoscalingConfig,
    BackendKind,
    EngineConfig,
    IngressConfig,
    JobsConfig,
    JsonWhitespace,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    ModelConfig,
    ModelKindSetting,
    RayConfig,
    RuntimeKind,
    ServerConfig,
    StructuredConfig,
    VariantConfig,
    builtin_model_config,
    default_home,
    is_redis_url,
)

__all__ = [
    "BUILTIN_CHAT_MODEL",
    "BUILTIN_EMBEDDING_MODEL",
    "IN_PROCESS",
    "RENAMED_FIELDS",
    "TOOL_CALL_PARSERS",
    "AuthConfig",
    "AutoscalingConfig",
    "BackendKind",
    "ConfigError",
    "EngineConfig",
    "IngressConfig",
    "JobsConfig",
    "JsonWhitespace",
    "LimitsConfig",
    "LogConfig",
    "MetricsConfig",
    "ModelConfig",
    "ModelKindSetting",
    "RayConfig",
    "RuntimeKind",
    "ServerConfig",
    "StructuredConfig",
    "VariantConfig",
    "build_config",
    "builtin_model_config",
    "default_home",
    "is_redis_url",
    "load_config_file",
]

"""`load_config_file`: YAML to ServerConfig, and every mistake named by its field path."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from llmserve.config import (
    BUILTIN_CHAT_MODEL,
    AuthConfig,
    ConfigError,
    EngineConfig,
    JobsConfig,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    ModelConfig,
    ServerConfig,
    StructuredConfig,
    load_config_file,
)

FULL = """
host: 0.0.0.0
port: 9000
home: ~/llmserve-home
models:
  - name: chat
    source: llmserve/tiny-chat
    kind: chat
    backend: local
    chat_template: llama-2
    max_model_len: 512
    revision: main
    public: false
engine:
  max_num_seqs: 8
  max_num_batched_tokens: 256
  block_size: 16
  kv_cache_memory_mb: 128
  num_threads: 2
  dtype: float32
auth:
  limit_store: redis://localhost:6379/0
  no_auth: true
  admin_key: secret
  default_max_concurrency: 4
  lease_seconds: 15
limits:
  max_request_body_mb: 2
  body_timeout_s: 5
  max_queue: 10
  request_timeout_s: 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmserve.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config_file(write(tmp_path, text))
    return error.value.problems


def test_every_field_is_read(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, FULL))
    assert config.host == "0.0.0.0"
    assert config.port == 9000
    assert config.home == Path("~/llmserve-home").expanduser()
    assert config.models == (
        ModelConfig("chat", "llmserve/tiny-chat", "chat", "local", "llama-2", 512, "main", False),
    )
    assert config.engine == EngineConfig(8, 256, 16, 128, 2, "float32")
    assert config.auth == AuthConfig("redis://localhost:6379/0", True, "secret", 4, 15.0)
    assert config.limits == LimitsConfig(2.0, 5.0, 10, 60.0)


def test_empty_file_serves_the_builtin_model(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, ""))
    assert [m.source for m in config.models] == [BUILTIN_CHAT_MODEL]


def test_unknown_keys_are_named_with_what_is_allowed(tmp_path: Path) -> None:
    found = problems(tmp_path, "prot: 80\nengine:\n  max_seqs: 3\n")
    assert found[0] == (
        "prot: unknown field; allowed: models, host, port, home, engine, auth, limits, metrics, "
        "log, shutdown_timeout_s, runtime, ingress, ray, jobs, structured, allowed_hosts, "
        "cors_origins, database"
    )
    assert found[1].startswith("engine.max_seqs: unknown field; allowed: max_num_seqs,")


def test_moved_fields_are_refused_with_their_new_name(tmp_path: Path) -> None:
    text = "auth:\n  state: sqlite\n  max_queue: 3\n  request_timeout_s: 9\n"
    assert problems(tmp_path, text) == [
        "auth.state: this field moved; use auth.limit_store ('in-process' or a redis:// URL)",
        "auth.max_queue: this field moved; use limits.max_queue",
        "auth.request_timeout_s: this field moved; use limits.request_timeout_s",
    ]


def test_wrong_types_and_choices_are_named(tmp_path: Path) -> None:
    text = "port: '80'\nmodels:\n  - name: a\n    source: b\n    backend: torch\n  - {}\n"
    assert problems(tmp_path, text) == [
        "models.0.backend: 'torch' is not allowed; allowed: 'local', 'fake'",
        "models.1.name: required",
        "port: expected an integer, got text '80'",
    ]


def test_values_rejected_by_the_dataclass_are_named(tmp_path: Path) -> None:
    assert problems(tmp_path, "engine:\n  max_num_seqs: 0\n") == [
        "engine: max_num_seqs must be at least 1"
    ]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "models: [")[0].startswith("not valid YAML")
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config_file(tmp_path / "missing.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "- 1\n") == [
        "the top level: expected a mapping of fields, got a list"
    ]


def test_readme_config_reference_loads_and_names_every_field(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)[0]  # Configuration: the first
    config = load_config_file(write(tmp_path, block))
    assert config.models[0].source == BUILTIN_CHAT_MODEL
    for cls in (
        ServerConfig, ModelConfig, EngineConfig, AuthConfig, LimitsConfig, MetricsConfig, LogConfig,
        JobsConfig, StructuredConfig,
    ):  # fmt: skip
        for field in dataclasses.fields(cls):
            assert re.search(rf"^\s*-?\s*{field.name}:", block, flags=re.M), field.name


def test_structured_settings_are_read_and_checked(tmp_path: Path) -> None:
    text = "structured:\n  cache_mb: 64\n  compile_timeout_s: 2.5\n"
    assert load_config_file(write(tmp_path, text)).structured == StructuredConfig(64.0, 2.5)
    assert problems(tmp_path, "structured:\n  cache_mb: -1\n") == [
        "structured: cache_mb must be non-negative"
    ]


def test_json_whitespace_is_compact_unless_configured(tmp_path: Path) -> None:
    assert load_config_file(write(tmp_path, "")).structured.whitespace == "compact"
    flexible = load_config_file(write(tmp_path, "structured: {whitespace: flexible}"))
    assert flexible.structured.whitespace == "flexible"
    assert problems(tmp_path, "structured: {whitespace: loose}") == [
        "structured.whitespace: 'loose' is not allowed; allowed: 'compact', 'flexible'"
    ]


def test_kv_cache_dtype_is_read_and_checked(tmp_path: Path) -> None:
    assert load_config_file(write(tmp_path, "")).engine.kv_cache_dtype == "auto"
    config = load_config_file(write(tmp_path, "engine: {kv_cache_dtype: bfloat16}"))
    assert config.engine.kv_cache_dtype == "bfloat16"
    config = load_config_file(write(tmp_path, "engine: {kv_cache_dtype: int8}"))
    assert config.engine.kv_cache_dtype == "int8"
    assert problems(tmp_path, "engine: {kv_cache_dtype: fp8}") == [
        "engine.kv_cache_dtype: 'fp8' is not allowed; allowed: 'auto', 'bfloat16', 'int8'"
    ]


def test_overrides_are_written_over_the_file_before_it_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "engine: {dtype: float16, quantization: int8}\nport: 1")
    overrides = {"engine": {"dtype": "float32"}, "port": 2}
    config = load_config_file(path, overrides)
    assert (config.engine.dtype, config.engine.quantization, config.port) == ("float32", "int8", 2)
    with pytest.raises(ConfigError, match="quantization int8 computes in float32"):
        load_config_file(path)

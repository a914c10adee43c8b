"""The scale-out part of the config: replicas, autoscaling, variants, runtime, ingress, --ray."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from llmserve.cli import build_parser
from llmserve.cli.serve import serve_config
from llmserve.config import (
    AutoscalingConfig,
    ConfigError,
    IngressConfig,
    ServerConfig,
    VariantConfig,
    builtin_model_config,
    load_config_file,
)

CONTRACT = """
runtime: ray                  # or local (default); `--ray` on the command line sets it too
ingress: {replicas: 2}        # replicas of the HTTP app (auth, limits, jobs, routes)
auth: {limit_store: "redis://127.0.0.1:6379/0"}  # shared per-key limits: >1 ingress needs them
models:
  - name: chat-a
    source: llmserve/tiny-chat
    replicas: 2
  - name: chat-b
    source: llmserve/tiny-chat
    autoscaling: {min_replicas: 1, max_replicas: 2, target_ongoing_requests: 2,
                  upscale_delay_s: 2, downscale_delay_s: 10}
  - name: chat-canary
    variants:
      - {name: v1, source: llmserve/tiny-chat, weight: 80}
      - {name: v2, source: llmserve/tiny-chat, weight: 20}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_issue_contract_loads(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, CONTRACT))
    chat_a, chat_b, canary = config.models
    assert config.runtime == "ray" and config.ingress == IngressConfig(replicas=2)
    assert chat_a.replicas == 2 and chat_a.autoscaling is None
    assert chat_b.autoscaling == AutoscalingConfig(1, 2, 2.0, 2.0, 10.0)
    assert canary.variants == (
        VariantConfig("v1", "llmserve/tiny-chat", 80.0),
        VariantConfig("v2", "llmserve/tiny-chat", 20.0),
    )
    assert [m.name for m in canary.variant_models] == ["chat-canary", "chat-canary"]


def test_runtime_defaults_to_local(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, "models: [{name: a, source: llmserve/tiny-chat}]"))
    assert config.runtime == "local" and config.ingress.replicas == 1


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (
            "[{name: a, source: s, replicas: 2, autoscaling: {max_replicas: 2}}]",
            "models.0: model a: give replicas or autoscaling, not both",
        ),
        (
            "[{name: a, variants: [{name: v1, source: s, weight: 0}]}]",
            "models.0.variants.0: variant v1: weight must be positive",
        ),
        (
            "[{name: a, variants: [{name: v1, source: s, weight: 1}, "
            "{name: v1, source: t, weight: 1}]}]",
            "models.0: model a: variant names must be unique; repeated: v1",
        ),
        (
            "[{name: a, source: s, variants: [{name: v1, source: s, weight: 1}]}]",
            "models.0: model a: give either a source or variants (not both)",
        ),
        ("[{name: a}]", "models.0: model a: give either a source or variants (not both)"),
        (
            "[{name: a, source: s, autoscaling: {min_replicas: 3, max_replicas: 2}}]",
            "models.0.autoscaling: max_replicas must be at least 1 and at least min_replicas",
        ),
        ("[{name: a, source: s, replicas: 0}]", "models.0: model a: replicas must be at least 1"),
    ],
)
def test_scale_out_mistakes_are_named(tmp_path: Path, models: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_file(write(tmp_path, f"models: {models}"))
    assert raised.value.problems == [message]


def test_unknown_runtime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_file(write(tmp_path, "runtime: k8s"))
    assert raised.value.problems == ["runtime: 'k8s' is not allowed; allowed: 'local', 'ray'"]


def test_ray_flags_set_the_runtime_and_address(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [{name: a, source: llmserve/tiny-chat}]")
    args = build_parser().parse_args(["serve", "--config", str(path), "--ray"])
    assert serve_config(args).runtime == "ray" and serve_config(args).ray.address is None
    args = build_parser().parse_args(["serve", "--config", str(path), "--ray-address", "auto"])
    assert serve_config(args).runtime == "ray" and serve_config(args).ray.address == "auto"


SHARED_LIMITS_FIX = (
    "ingress.replicas is 2, but per-key limits are counted in process, so each replica would "
    "allow a key its whole limit: give a shared store with auth.limit_store: "
    "redis://HOST:PORT/DB (on the command line: --state redis://HOST:PORT/DB)"
)
WITHOUT_REDIS = CONTRACT.replace('auth: {limit_store: "redis://127.0.0.1:6379/0"}', "")


def test_multi_replica_ingress_without_redis_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, WITHOUT_REDIS)
    done = subprocess.run(
        [sys.executable, "-m", "llmserve", "serve", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"llmserve: invalid config {path}:\n  - the top level: {SHARED_LIMITS_FIX}"
    )


def test_the_app_builder_checks_the_shared_limits_rule(tmp_path: Path) -> None:
    from llmserve.cluster.deployments import app_builder

    with pytest.raises(ConfigError) as raised:
        app_builder({"config": str(write(tmp_path, WITHOUT_REDIS))})
    assert raised.value.problems == [f"the top level: {SHARED_LIMITS_FIX}"]
    with pytest.raises(ValueError, match="per-key limits are counted in process"):
        ServerConfig(models=(builtin_model_config(),), ingress=IngressConfig(replicas=2))


def test_state_flag_completes_the_file_before_it_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path, WITHOUT_REDIS)
    redis = "redis://127.0.0.1:6390/1"
    args = build_parser().parse_args(["serve", "--config", str(path), "--state", redis])
    config = serve_config(args)
    assert config.auth.limit_store == redis and config.ingress.replicas == 2
    args = build_parser().parse_args(["serve", "--config", str(path), "--state", "sqlite"])
    with pytest.raises(ConfigError, match="per-key limits are counted in process"):
        serve_config(args)


def test_ray_runtime_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmserve.cli.serve_checks import StartupError, check_ray_installed

    config = load_config_file(write(tmp_path, "runtime: ray"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "ray" else real_find_spec(name)
    )
    with pytest.raises(StartupError, match=r"install it with pip install 'llmserve\[ray\]'"):
        check_ray_installed(config)

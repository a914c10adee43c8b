"""How a `ServerConfig` becomes Ray Serve deployments (no Ray needed), and the README's
scale-out YAML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmserve.cluster.deployments import (
    cpus_needed,
    engine_deployments,
    engine_options,
    initial_weights,
)
from llmserve.cluster.launch import head_cpus
from llmserve.config import RayConfig, ServerConfig, load_config_file

README = Path(__file__).parents[2] / "README.md"


def scale_out_config(tmp_path: Path) -> ServerConfig:
    """The YAML of the README's "Scale out" section, loaded."""
    section = README.read_text().split("## Scale out", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    path = tmp_path / "cluster.yaml"
    path.write_text(block)
    return load_config_file(path)


def test_readme_scale_out_yaml_is_the_issue_contract(tmp_path: Path) -> None:
    config = scale_out_config(tmp_path)
    assert config.runtime == "ray" and config.ingress.replicas == 2
    assert [m.name for m in config.models] == ["chat-a", "chat-b", "chat-canary"]


def test_one_engine_deployment_per_model_and_variant(tmp_path: Path) -> None:
    deployments = engine_deployments(scale_out_config(tmp_path))
    assert [(d.name, d.model.name, d.variant) for d in deployments] == [
        ("engine-0-chat-a", "chat-a", None),
        ("engine-1-chat-b", "chat-b", None),
        ("engine-2-chat-canary-v1", "chat-canary", "v1"),
        ("engine-2-chat-canary-v2", "chat-canary", "v2"),
    ]


def test_replicas_and_autoscaling_become_serve_options(tmp_path: Path) -> None:
    config = scale_out_config(tmp_path)
    chat_a, chat_b, _ = config.models
    assert engine_options(chat_a, config)["num_replicas"] == 2
    assert engine_options(chat_a, config)["ray_actor_options"] == {"num_cpus": 1.0}
    scaling = engine_options(chat_b, config)["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 2)
    assert (scaling["upscale_delay_s"], scaling["downscale_delay_s"]) == (2.0, 10.0)
    assert scaling["target_ongoing_requests"] == 2.0
    assert initial_weights(config) == {"chat-canary": {"v1": 80.0, "v2": 20.0}}


def test_a_local_head_has_room_for_every_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = scale_out_config(tmp_path)
    assert cpus_needed(config) == 2 + 2 + 1 + 1  # chat-b at its most replicas
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert head_cpus(config) == 6
    assert "the replicas declare 6 CPUs and this machine has 2" in capsys.readouterr().out
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert head_cpus(config) == 16
    fixed = ServerConfig(models=config.models, ray=RayConfig(num_cpus=2))
    assert head_cpus(fixed) == 2

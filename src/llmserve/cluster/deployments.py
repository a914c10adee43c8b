"""The Ray Serve application of a `ServerConfig`: which deployments, with which options.

- one engine deployment per model, or per variant of a canary model (`EngineReplica`), with
  `num_replicas` or `autoscaling_config` and `ray_actor_options.num_cpus` from the model;
- one board deployment (`BoardReplica`) with the canary weights;
- the ingress deployment (`IngressReplica`, `ingress.replicas`) running the FastAPI app.
This is the same graph a Serve config file for `serve deploy` describes (README: Scale out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llmserve.backends.encoder_config import is_embedding_config
from llmserve.config import BackendKind, ModelConfig, ServerConfig

APP_NAME = "llmserve"
BOARD_DEPLOYMENT = "canary-board"
INGRESS_DEPLOYMENT = "ingress"
INGRESS_MAX_ONGOING = 10_000  # NOTE: Serve's default (5) would queue requests before our limits
CACHE_ROUTER = "llmserve.cluster.cache_router.PromptCacheRouter"  # prompt_cache_key affinity


@dataclass(frozen=True)
class EngineDeployment:
    """One engine deployment: the model it loads and the name Serve knows it by."""

    name: str
    model: ModelConfig  # a plain model (a variant's own source when `variant` is set)
    variant: str | None = None


def runs_on_engines(model: ModelConfig) -> bool:
    """Whether `model` gets engine deployments (chat models on our engine); others run in the
    ingress replicas (fake models, embedding models: small and fast)."""
    return model.backend == BackendKind.LOCAL and (
        bool(model.variants) or not is_embedding_config(model)
    )


def engine_deployments(config: ServerConfig) -> list[EngineDeployment]:
    """Every engine deployment of `config`, in model order."""
    found: list[EngineDeployment] = []
    for index, model in enumerate(m for m in config.models if runs_on_engines(m)):
        base = f"engine-{index}-{_safe(model.name)}"
        if not model.variants:
            found.append(EngineDeployment(base, model))
        for variant, variant_model in zip(model.variants, model.variant_models, strict=True):
            found.append(
                EngineDeployment(f"{base}-{_safe(variant.name)}", variant_model, variant.name)
            )
    return found


def engine_options(model: ModelConfig, config: ServerConfig) -> dict[str, Any]:
    """`serve.deployment` options of a model's engine deployment."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": model.num_cpus},
        "max_ongoing_requests": config.engine.max_num_seqs,
        "graceful_shutdown_timeout_s": 5,
        "request_router_config": {
            "request_router_class": CACHE_ROUTER,
            "request_router_kwargs": {"block_size": config.engine.block_size},
        },
    }
    if model.autoscaling is None:
        options["num_replicas"] = model.replicas or 1
        return options
    scaling = model.autoscaling
    options["autoscaling_config"] = {
        "min_replicas": scaling.min_replicas,
        "initial_replicas": max(1, scaling.min_replicas),
        "max_replicas": scaling.max_replicas,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
        "look_back_period_s": scaling.look_back_period_s,
        "metrics_interval_s": min(1.0, scaling.look_back_period_s),
    }
    return options


def initial_weights(config: ServerConfig) -> dict[str, dict[str, float]]:
    """The configured weights of every canary model, by model name."""
    return {m.name: {v.name: v.weight for v in m.variants} for m in config.models if m.variants}


def cpus_needed(config: ServerConfig) -> float:
    """CPUs the deployments declare at their most replicas (ingress included)."""
    total = config.ingress.replicas * config.ingress.num_cpus
    for deployment in engine_deployments(config):
        scaling = deployment.model.autoscaling
        replicas = scaling.max_replicas if scaling else deployment.model.replicas or 1
        total += replicas * deployment.model.num_cpus
    return total


def build_application(config: ServerConfig) -> Any:
    """The bound Serve application (`serve.run` it, named `APP_NAME`, at route prefix "/")."""
    from ray import serve

    from llmserve.cluster.board import BoardReplica
    from llmserve.cluster.engine import EngineReplica
    from llmserve.cluster.ingress import IngressReplica

    engines = {
        d.name: serve.deployment(name=d.name, **engine_options(d.model, config))(
            EngineReplica
        ).bind(d.model, config)
        for d in engine_deployments(config)
    }
    board = serve.deployment(
        name=BOARD_DEPLOYMENT, num_replicas=1, ray_actor_options={"num_cpus": 0}
    )(BoardReplica).bind(initial_weights(config))
    ingress = serve.deployment(
        name=INGRESS_DEPLOYMENT,
        num_replicas=config.ingress.replicas,
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        ray_actor_options={"num_cpus": config.ingress.num_cpus},
    )(IngressReplica)
    return ingress.bind(config, engines, board)


def _safe(name: str) -> str:
    """`name` with only the characters a deployment name may hold."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def app_builder(args: dict[str, str]) -> Any:
    """For Ray Serve's own config files (`serve deploy`): `import_path:
    llmserve.cluster.deployments:app_builder` with `args: {config: /path/to/cluster.yaml}`."""
    from llmserve.config import load_config_file

    return build_application(load_config_file(args["config"]))

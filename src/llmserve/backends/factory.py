"""Build the backend a model's config asks for (the one place that knows every backend class)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmserve.backends.base import Backend
from llmserve.backends.canary import CanaryBoard
from llmserve.backends.encoder_config import is_embedding_config
from llmserve.backends.fake import FakeBackend
from llmserve.config import BackendKind, ModelConfig, ServerConfig

FAKE_MAX_MODEL_LEN = 2048


@dataclass(frozen=True)
class RemoteEngine:
    """An engine deployment seen from an ingress replica (cluster/ingress.py)."""

    handle: Any  # ray.serve.handle.DeploymentHandle of cluster.engine.EngineReplica
    count_replicas: Callable[[], int]  # its running replicas (a blocking call)


@dataclass(frozen=True)
class RemoteEngines:
    """The engine deployments of a Ray runtime by (model, variant), and the shared canary board."""

    model_to_engine: Mapping[tuple[str, str | None], RemoteEngine]
    board: CanaryBoard

    def serves(self, model: ModelConfig) -> bool:
        """Whether `model` (or each of its variants) runs on engine deployments."""
        return any(name == model.name for name, _ in self.model_to_engine)


def build_backend(
    model: ModelConfig, server: ServerConfig, remote: RemoteEngines | None = None
) -> Backend:
    """A backend serving `model` (or its variants); nothing loads before `start()`.

    With `remote` (an ingress replica on Ray), a model with engine deployments talks to them.
    """
    if remote is not None and remote.serves(model):
        return _remote_backend(model, server, remote)
    if model.variants:
        variants = {
            v.name: build_backend(variant_model, server)
            for v, variant_model in zip(model.variants, model.variant_models, strict=True)
        }
        return _canary(model, variants)
    if model.backend == BackendKind.FAKE:
        return FakeBackend(
            model.name,
            max_model_len=model.max_model_len or FAKE_MAX_MODEL_LEN,
            token_delay_s=model.fake_token_delay_s,
        )
    if is_embedding_config(model):
        from llmserve.backends.encoder import EncoderBackend

        return EncoderBackend.from_config(model, server.home)
    # NOTE: imported here so that the CLI and API tests do not import torch.
    from llmserve.backends.local import LocalBackend

    return LocalBackend(model, server.engine, server.home, server.structured)


def build_backends(server: ServerConfig, remote: RemoteEngines | None = None) -> dict[str, Backend]:
    """One backend per served model, by served name."""
    return {model.name: build_backend(model, server, remote) for model in server.models}


def _canary(
    model: ModelConfig, variants: Mapping[str, Backend], board: CanaryBoard | None = None
) -> Backend:
    from llmserve.backends.variants import VariantBackend

    weights = {v.name: v.weight for v in model.variants}
    return VariantBackend(model.name, variants, weights, board)


def _remote_backend(model: ModelConfig, server: ServerConfig, remote: RemoteEngines) -> Backend:
    """`model` through its engine deployments (a canary: one per variant, sharing the board)."""
    if not model.variants:
        return _handle_backend(model, server, remote.model_to_engine[(model.name, None)])
    variants = {
        v.name: _handle_backend(variant_model, server, remote.model_to_engine[(model.name, v.name)])
        for v, variant_model in zip(model.variants, model.variant_models, strict=True)
    }
    return _canary(model, variants, remote.board)


def _handle_backend(model: ModelConfig, server: ServerConfig, engine: RemoteEngine) -> Backend:
    from llmserve.backends.ray_handle import RayHandleBackend

    return RayHandleBackend(
        model, server.home, engine.handle, engine.count_replicas, server.engine.max_num_seqs,
        server.structured,
    )  # fmt: skip

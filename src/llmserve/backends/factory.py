"""Build the backend a model's config asks for (the one place that knows every backend class)."""

from __future__ import annotations

from llmserve.backends.base import Backend
from llmserve.backends.encoder_config import is_embedding_config
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

FAKE_MAX_MODEL_LEN = 2048


def build_backend(model: ModelConfig, server: ServerConfig) -> Backend:
    """A backend serving `model` (or its variants); nothing loads before `start()`."""
    if model.variants:
        from llmserve.backends.variants import VariantBackend

        variants = {
            v.name: build_backend(variant_model, server)
            for v, variant_model in zip(model.variants, model.variant_models, strict=True)
        }
        return VariantBackend(model.name, variants, {v.name: v.weight for v in model.variants})
    if model.backend == "fake":
        return FakeBackend(
            model.name,
            max_model_len=model.max_model_len or FAKE_MAX_MODEL_LEN,
            token_delay_s=model.fake_token_delay_s,
        )
    if model.backend == "local" and is_embedding_config(model):
        from llmserve.backends.encoder import EncoderBackend

        return EncoderBackend.from_config(model, server.home)
    # NOTE: imported here so that the CLI and API tests do not import torch.
    from llmserve.backends.local import LocalBackend

    return LocalBackend(model, server.engine, server.home, server.structured)


def build_backends(server: ServerConfig) -> dict[str, Backend]:
    """One backend per served model, by served name."""
    return {model.name: build_backend(model, server) for model in server.models}

"""`EngineReplica`: one replica of a model's engine deployment, running our own engine.

Each replica declares `num_cpus` to Ray (the deployment's `ray_actor_options`) and runs torch
with that many threads unless `engine.num_threads` says otherwise, so replicas sharing a machine
never oversubscribe its cores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from ray import serve

from llmserve.backends.factory import build_backend
from llmserve.config import ModelConfig, ServerConfig
from llmserve.types import GenerateOutput, GenerateRequest, ModelInfo


class EngineReplica:
    """Our engine (a `LocalBackend`, built by backends/factory.py) inside a Ray Serve replica;
    the ingress calls it by handle."""

    async def __init__(  # type: ignore[misc]  # NOTE: Ray Serve awaits an async constructor
        self, model: ModelConfig, server: ServerConfig
    ) -> None:
        # NOTE: engine.num_threads is the one torch-threads setting; a replica's default is the
        # CPUs it declares, so that replicas sharing a machine never oversubscribe its cores.
        threads = server.engine.num_threads or model.threads_per_replica
        engine = dataclasses.replace(server.engine, num_threads=threads)
        self._backend = build_backend(model, dataclasses.replace(server, engine=engine))
        await self._backend.start()
        self._replica = serve.get_replica_context().replica_id.unique_id

    async def model_info(self) -> ModelInfo:
        """The served model's facts (name, context length), read once by each ingress."""
        return self._backend.info

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        """Stream `request`; a cancelled call (the client left) aborts it in the engine."""
        stream = self._backend.generate(request)
        try:
            async for output in stream:
                yield dataclasses.replace(output, replica=self._replica)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def __del__(self) -> None:
        """Ray Serve calls this when it stops the replica: stop the engine thread."""
        await self._backend.shutdown()

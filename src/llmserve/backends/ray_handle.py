"""`RayHandleBackend`: a model served by a Ray Serve engine deployment, seen from the ingress.

Tokenizing and template rendering happen here, at the ingress, with the model's own tokenizer,
so usage and context checks are exact before the first byte; only token ids travel to the
engine replicas. Outputs stream back through `handle.options(stream=True)`. Closing the stream
early (client disconnect, timeout) cancels the call on the replica, whose engine then aborts
the request. A replica that dies mid-stream ends its streams with `ReplicaFailedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from llmserve.backends.base import Canary
from llmserve.backends.chat_text import ChatText, load_grammars, load_tokenizer
from llmserve.config import ModelConfig, StructuredConfig
from llmserve.errors import OverloadedError, ReplicaFailedError, UnsupportedOperationError
from llmserve.models.source import resolve_model_path
from llmserve.types import (
    BackendLoad,
    EmbeddingResult,
    GenerateOutput,
    GenerateRequest,
    ModelInfo,
)

REPLICAS_POLL_S = 1.0
logger = logging.getLogger(__name__)
ReplicaCounter = Callable[[], int]  # the running replicas of the deployment (blocking call)


class RayHandleBackend(ChatText):
    """Serves one model (or one variant) through a deployment handle of engine replicas."""

    canary: Canary | None = None  # a plain model: no variants

    def __init__(
        self,
        model: ModelConfig,
        home: Path,
        handle: Any,  # ray.serve.handle.DeploymentHandle of cluster.engine.EngineReplica
        count_replicas: ReplicaCounter,
        max_running_per_replica: int,
        structured: StructuredConfig | None = None,
    ) -> None:
        self._model = model
        self._home = home
        self._handle = handle
        self._count_replicas = count_replicas
        self._max_running_per_replica = max_running_per_replica
        self._structured = structured or StructuredConfig()
        self._info: ModelInfo | None = None
        self._request_to_call: dict[str, Any] = {}  # request id -> its streaming call
        self._num_replicas = 0
        self._poll: asyncio.Task[None] | None = None

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise OverloadedError(f"model {self._model.name} is not loaded (starting or stopped)")
        return self._info

    async def start(self) -> None:
        """Load the tokenizer here and ask a replica for the model's facts."""
        path = resolve_model_path(self._model, self._home)
        self._tokenizer = await asyncio.to_thread(load_tokenizer, self._model, path)
        self._grammars = await asyncio.to_thread(
            load_grammars, self._tokenizer, self._model, self._structured
        )
        self._info = await self._handle.model_info.remote()
        self._num_replicas = await asyncio.to_thread(self._count_replicas)
        self._poll = asyncio.create_task(self._poll_replicas())

    async def shutdown(self) -> None:
        poll, self._poll = self._poll, None
        if poll is not None:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
        for call in list(self._request_to_call.values()):
            call.cancel()

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        """Stream `request` from a replica; closing early cancels it there."""
        from ray.exceptions import RayError

        call = self._handle.options(stream=True, method_name="generate").remote(request)
        self._request_to_call[request.request_id] = call
        try:
            async for output in call:
                yield output
        except RayError as exc:  # the replica died, or Ray could not reach it
            logger.warning("replica of %s failed: %s", self._model.name, exc)
            raise ReplicaFailedError(self._model.name) from None
        finally:
            self._request_to_call.pop(request.request_id, None)
            call.cancel()  # NOTE: a no-op once the stream ended; else the replica aborts it

    async def abort(self, request_id: str) -> None:
        call = self._request_to_call.get(request_id)
        if call is not None:
            call.cancel()

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        raise UnsupportedOperationError(f"model {self._model.name} is a chat model")

    def load(self) -> BackendLoad:
        """Requests this ingress has in flight on the model, and its replicas right now."""
        return BackendLoad(
            num_running=len(self._request_to_call),
            num_waiting=0,
            max_running=max(1, self._num_replicas) * self._max_running_per_replica,
            num_replicas=self._num_replicas,
        )

    async def _poll_replicas(self) -> None:
        """Keep the replica count of /health current (autoscaling changes it)."""
        while True:
            await asyncio.sleep(REPLICAS_POLL_S)
            try:
                self._num_replicas = await asyncio.to_thread(self._count_replicas)
            except Exception as exc:  # NOTE: the controller may be busy or stopping: keep the count
                logger.warning("cannot count the replicas of %s: %s", self._model.name, exc)

"""`IngressReplica`: one replica of the HTTP app on Ray Serve (the same `create_app` as local).

Auth, limits, admission and every route run here; chat models are `RayHandleBackend`s on their
engine deployments (a canary model: a `VariantBackend` over one per variant, sharing the board);
fake and embedding models run in the replica itself.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.base import Backend
from llmserve.backends.factory import build_backend
from llmserve.backends.ray_handle import RayHandleBackend
from llmserve.backends.variants import VariantBackend
from llmserve.cluster.board import RayCanaryBoard
from llmserve.cluster.deployments import (
    APP_NAME,
    EngineDeployment,
    engine_deployments,
    runs_on_engines,
)
from llmserve.config import ModelConfig, ServerConfig

POSTGRES_PREFIXES = ("postgresql://", "postgres://")


@serve.ingress()
class IngressReplica:
    """Builds the FastAPI app once its engine and board handles are known."""

    def __init__(self, config: ServerConfig, engines: dict[str, Any], board: Any) -> None:
        self._config = node_config(config)
        self._engines = engines  # deployment name -> DeploymentHandle (Serve resolved them)
        self._board = RayCanaryBoard(board)

    def __serve_build_asgi_app__(self) -> Any:
        """Called by Serve after the constructor; Serve then runs the app's lifespan."""
        backends = {model.name: self._backend(model) for model in self._config.models}
        app = create_app(self._config, backends, build_gatekeeper(self._config))
        app.add_middleware(DropRequestIdHeader)
        return app

    def _backend(self, model: ModelConfig) -> Backend:
        if not runs_on_engines(model):
            return build_backend(model, self._config)
        mine = [d for d in engine_deployments(self._config) if d.model.name == model.name]
        if not model.variants:
            return self._handle_backend(mine[0])
        variants = {d.variant or "": self._handle_backend(d) for d in mine}
        weights = {v.name: v.weight for v in model.variants}
        return VariantBackend(model.name, variants, weights, self._board)

    def _handle_backend(self, deployment: EngineDeployment) -> RayHandleBackend:
        return RayHandleBackend(
            deployment.model,
            self._config.home,
            self._engines[deployment.name],
            lambda: running_replicas(deployment.name),
            self._config.engine.max_num_seqs,
        )


def node_config(config: ServerConfig) -> ServerConfig:
    """Issue 21: with a PostgreSQL database nothing durable lives in the home, so a replica keeps
    its local files (its copies of uploaded files) in its own node's `LLMSERVE_HOME`, when that
    node sets one; with SQLite every replica must use the one shared home of the config."""
    node_home = os.environ.get("LLMSERVE_HOME")
    if config.database is None or not config.database.startswith(POSTGRES_PREFIXES):
        return config
    return dataclasses.replace(config, home=Path(node_home)) if node_home else config


def running_replicas(deployment: str) -> int:
    """The replicas of `deployment` Serve reports RUNNING now (asks the controller: blocking)."""
    states = serve.status().applications[APP_NAME].deployments[deployment].replica_states
    return sum(count for state, count in states.items() if state == "RUNNING")  # a str enum


class DropRequestIdHeader:
    """Removes the app's `x-request-id` from answers: Serve's proxy adds the same id again (it
    gave the app that id as the request's), and a client should see the header once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_without_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_without_id if scope["type"] == "http" else send)

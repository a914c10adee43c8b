"""`IngressReplica`: one replica of the HTTP app on Ray Serve (the same `create_app` as local).

Auth, limits, admission and every route run here; chat models are `RayHandleBackend`s on their
engine deployments (a canary model: one per variant, sharing the board), built by
`backends/factory.py` like every backend; fake and embedding models run in the replica itself.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.api.app import create_app
from llmserve.api.http.host_guard import guard_hosts
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.factory import RemoteEngine, RemoteEngines, build_backends
from llmserve.cluster.board import RayCanaryBoard
from llmserve.cluster.deployments import APP_NAME, engine_deployments
from llmserve.config import ServerConfig

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
        backends = build_backends(self._config, self._remote_engines())
        app = create_app(self._config, backends, build_gatekeeper(self._config))
        app.add_middleware(DropRequestIdHeader)
        guard_hosts(app, self._config)  # as `serve` locally: foreign Host 400, foreign Origin 403
        return app

    def _remote_engines(self) -> RemoteEngines:
        """The engine deployments' handles by (model, variant), for `build_backends`."""
        model_to_engine = {
            (d.model.name, d.variant): RemoteEngine(
                self._engines[d.name], functools.partial(running_replicas, d.name)
            )
            for d in engine_deployments(self._config)
        }
        return RemoteEngines(model_to_engine, self._board)


def node_config(config: ServerConfig) -> ServerConfig:
    """With a PostgreSQL database nothing durable lives in the home, so a replica keeps
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

"""A server process for the multi-process tests: a slow fake model, keys in --home, limits in
--state. Prints its port on the first line of stdout once it listens."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import uvicorn

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.fake import FakeBackend
from llmserve.config import AuthConfig, ModelConfig, ServerConfig

MODEL = "fake-model"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--lease-seconds", type=float, required=True)
    args = parser.parse_args()
    auth = AuthConfig(limit_store=args.state, lease_seconds=args.lease_seconds)
    models = (ModelConfig(MODEL, source="fake", backend="fake"),)
    config = ServerConfig(models=models, home=args.home, port=0, auth=auth)
    backend = FakeBackend(MODEL, reply="x" * 400, max_model_len=1024, token_delay_s=0.05)
    app = create_app(config, {MODEL: backend}, build_gatekeeper(config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())

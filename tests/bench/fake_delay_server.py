"""A server process for the bench tests: the fake model with a known delay per token.

Usage: python fake_delay_server.py SECONDS_PER_TOKEN. Prints its port on the first line of stdout
once it listens.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: open_gatekeeper, when run as a script
from open_gatekeeper import OpenGatekeeper

from llmserve.api.app import create_app
from llmserve.backends.fake import FakeBackend
from llmserve.config import ModelConfig, ServerConfig

MODEL = "fake-model"


async def main(token_delay_s: float) -> None:
    models = (ModelConfig(MODEL, source="fake", backend="fake"),)
    config = ServerConfig(models=models, home=Path(tempfile.mkdtemp()), port=0)
    backend = FakeBackend(
        MODEL, max_model_len=4096, max_concurrency=64, token_delay_s=token_delay_s
    )
    app = create_app(config, {MODEL: backend}, OpenGatekeeper())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    print(server.servers[0].sockets[0].getsockname()[1], flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))

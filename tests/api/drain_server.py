"""A server process for the drain tests: `llmserve serve`'s own start-up, logging and signal
handling (cli/operations.py: log_start, run_until_drained) around a slow fake model, since a
configured `backend: fake` answers at once. Prints its port on the first line of stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmserve.api.app import create_app
from llmserve.auth.factory import build_gatekeeper
from llmserve.backends.fake import FakeBackend
from llmserve.cli.operations import log_start, run_until_drained
from llmserve.config import LogConfig, ModelConfig, ServerConfig

MODEL = "fake-model"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--shutdown-timeout", type=float, required=True)
    parser.add_argument("--token-delay", type=float, required=True)
    args = parser.parse_args()
    config = ServerConfig(
        models=(ModelConfig(MODEL, source="fake", backend="fake"),),
        home=args.home,
        port=0,
        shutdown_timeout_s=args.shutdown_timeout,
        log=LogConfig(format="json"),
    )
    log_start(config)
    backend = FakeBackend(
        MODEL, reply="x" * 4000, max_model_len=8192, token_delay_s=args.token_delay
    )
    app = create_app(config, {MODEL: backend}, build_gatekeeper(config))
    return run_until_drained(app, config, None, lambda port: print(port, flush=True))


if __name__ == "__main__":
    raise SystemExit(main())

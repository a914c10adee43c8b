"""`LiveServer`: a real uvicorn server for an app, on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import threading
import time

import uvicorn

STARTUP_DEADLINE_S = 120.0  # loading a model on a slow, busy machine takes a while


class LiveServer:
    """uvicorn in a background thread on a free port; stopped on exit."""

    def __init__(self, app: object) -> None:
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    @property
    def base_url(self) -> str:
        """The same as `url` (the name some tests use)."""
        return self.url

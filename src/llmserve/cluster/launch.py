"""`llmserve serve --ray`: start (or join) a Ray cluster, run the application, stop it cleanly.

Without `ray.address` a local Ray head is started (this machine's CPUs, no dashboard, a small
object store) and stopped again on Ctrl+C or SIGTERM, leaving no Ray process behind. With an
address the application joins that cluster and, on stop, deletes only itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

from llmserve.cluster.deployments import (
    APP_NAME,
    build_application,
    cpus_needed,
    engine_deployments,
)
from llmserve.cluster.proxy_ready import wait_for_every_proxy
from llmserve.config import ServerConfig
from llmserve.models.source import resolve_model_path

NAMESPACE = "llmserve"
QUIET = {"log_level": "WARNING", "enable_access_log": False}  # Serve logs per call otherwise


def serve_on_ray(config: ServerConfig, on_ready: Callable[[int], None]) -> int:
    """Run the application until SIGINT or SIGTERM; `on_ready(port)` once every proxy on the
    port routes to it."""
    import ray
    from ray import serve

    port = config.port or _free_port(config.host)
    started_head = config.ray.address is None
    prepare_models(config)
    _connect(config)
    # NOTE: after ray.init, which installs its own SIGTERM handler: ours cleans up like Ctrl+C
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": config.host, "port": port}, logging_config=QUIET)
        serve.run(build_application(config), name=APP_NAME, route_prefix="/", logging_config=QUIET)
        if not wait_for_every_proxy(config.host, port):
            print("llmserve: a Serve proxy still has no routes; its requests get 404", flush=True)
        on_ready(port)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        if started_head:
            serve.shutdown()  # type: ignore[no-untyped-call]
        else:
            serve.delete(APP_NAME)
        ray.shutdown()  # stops every process of a head we started


def prepare_models(config: ServerConfig) -> None:
    """Build the built-in model (and check local folders) once, here, before the replicas all
    start at once: they then find it built instead of building it side by side."""
    for deployment in engine_deployments(config):
        resolve_model_path(deployment.model, config.home)


def _connect(config: ServerConfig) -> None:
    import ray

    if config.ray.address is not None:
        ray.init(address=config.ray.address, namespace=NAMESPACE, logging_level=logging.WARNING)
        return
    ray.init(
        num_cpus=head_cpus(config),
        include_dashboard=False,
        object_store_memory=config.ray.object_store_mb * 2**20,
        namespace=NAMESPACE,
        logging_level=logging.WARNING,
    )


def head_cpus(config: ServerConfig) -> int:
    """CPUs of a local head: `ray.num_cpus`, else this machine's, raised to what the config
    declares so every replica can start (they then share cores; a note says so)."""
    if config.ray.num_cpus is not None:
        return config.ray.num_cpus
    machine = os.cpu_count() or 1
    needed = int(cpus_needed(config) + 0.999)
    if needed > machine:
        print(
            f"llmserve: the replicas declare {needed} CPUs and this machine has {machine}: "
            "they will share cores (lower num_cpus or replicas per model to avoid it)",
            flush=True,
        )
    return max(machine, needed)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _free_port(host: str) -> int:
    """A port nobody listens on (Serve's proxy needs a number; `--port 0` asks for any)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])

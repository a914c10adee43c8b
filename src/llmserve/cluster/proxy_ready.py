"""Wait until every Serve proxy behind the service's port routes to the application.

`serve.run` returns once the replicas run, but each node's proxy learns the route table a
moment later, and until then answers 404 ("Path '/v1/…' not found"). Proxies that share a
machine share the port (SO_REUSEPORT), and the kernel hands each new connection to one of
them, so one answer proves nothing: the service counts as ready after a run of fresh
connections in a row that all found a proxy with routes (`/-/healthz` answers 200 only then).
"""

from __future__ import annotations

import time

import httpx

HEALTHY_IN_A_ROW = 24  # fresh connections; each misses one unready proxy of two with p = 1/2
POLL_S = 0.1


def wait_for_every_proxy(host: str, port: int, deadline_s: float = 300.0) -> bool:
    """True once `HEALTHY_IN_A_ROW` fresh connections in a row reach a proxy with routes;
    False if `deadline_s` passes first (the service may still come up later)."""
    url = f"http://{probe_host(host)}:{port}/-/healthz"
    deadline = time.monotonic() + deadline_s
    in_a_row = 0
    while in_a_row < HEALTHY_IN_A_ROW:
        if time.monotonic() > deadline:
            return False
        in_a_row = in_a_row + 1 if answers_healthy(url) else 0
        if in_a_row == 0:
            time.sleep(POLL_S)
    return True


def answers_healthy(url: str) -> bool:
    try:
        with httpx.Client(timeout=5.0) as client:  # a client per probe: a fresh connection
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def probe_host(host: str) -> str:
    """Where to reach a proxy bound to `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host.strip('[]')}]" if ":" in host else host

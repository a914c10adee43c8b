"""`serve --ray` says it is serving only once every proxy sharing the port has the routes:
two real HTTP servers share one port (SO_REUSEPORT, as Serve's proxies on one machine do)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from llmserve.cluster.proxy_ready import probe_host, wait_for_every_proxy


class Proxy(HTTPServer):
    """Answers `/-/healthz` with 200 once `routed` is set, 503 before (as Serve's proxy)."""

    allow_reuse_port = True

    def __init__(self, port: int, routed: bool) -> None:
        self.routed = threading.Event()
        if routed:
            self.routed.set()
        super().__init__(("127.0.0.1", port), Healthz)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, Proxy)
        self.send_response(200 if self.server.routed.is_set() else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def two_proxies() -> Iterator[tuple[int, Proxy]]:
    """(the shared port, the proxy without routes yet); the other one has them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proxies = [Proxy(port, routed=True), Proxy(port, routed=False)]
    threads = [threading.Thread(target=p.serve_forever, daemon=True) for p in proxies]
    for thread in threads:
        thread.start()
    yield port, proxies[1]
    for proxy in proxies:
        proxy.shutdown()
        proxy.server_close()


def test_not_ready_while_one_proxy_of_two_lacks_the_routes(two_proxies: tuple[int, Proxy]) -> None:
    port, _ = two_proxies
    assert wait_for_every_proxy("127.0.0.1", port, deadline_s=3.0) is False


def test_ready_once_both_proxies_have_the_routes(two_proxies: tuple[int, Proxy]) -> None:
    port, late = two_proxies
    late.routed.set()
    assert wait_for_every_proxy("0.0.0.0", port, deadline_s=60.0) is True


def test_probe_host_reaches_wildcard_and_ipv6_binds_locally() -> None:
    assert probe_host("0.0.0.0") == "127.0.0.1"
    assert probe_host("::") == "[::1]"
    assert probe_host("::1") == "[::1]"
    assert probe_host("10.0.0.5") == "10.0.0.5"

"""Who may talk to the server: a foreign `Host` is a 400, a foreign `Origin` a 403.

An open server (no keys yet) on loopback is for this machine only. Without these checks any web
page could write to it: a multipart POST needs no CORS preflight, and DNS rebinding points an
attacker's name at 127.0.0.1. The `Host` must be the server's own address, a loopback name or one
of `allowed_hosts`; a request carrying an `Origin` must come from the server's own pages (the
playground, the admin console) or one of `cors_origins`, which also get CORS headers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserve.api.http.errors import error_response
from llmserve.config import ServerConfig
from llmserve.errors import InvalidRequestError, PermissionDeniedError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
ANY = "*"


def host_name(host_header: str) -> str:
    """The name part of a `Host` header ("[::1]:8000" -> "::1"), lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The `Host` names and `Origin`s one server accepts."""

    def __init__(self, bind_host: str, allowed_hosts: Iterable[str], cors_origins: Iterable[str]):
        self.any_ip = bind_host in WILDCARD_HOSTS  # bound everywhere: any address of this machine
        names = {*LOOPBACK_NAMES, host_name(bind_host), *(h.lower() for h in allowed_hosts)}
        if self.any_ip:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(names)
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)

    def host_allowed(self, host_header: str | None) -> bool:
        """True for this server's own names (any port)."""
        if host_header is None:
            return True  # HTTP/1.0 without Host: not reachable by a browser page
        name = host_name(host_header)
        return ANY in self.names or name in self.names or (self.any_ip and _is_ip(name))

    def origin_listed(self, origin: str) -> bool:
        """True when `cors_origins` lets pages of `origin` call the server."""
        return ANY in self.origins or origin.rstrip("/").lower() in self.origins


def host_policy(config: ServerConfig) -> HostPolicy:
    """The policy of `config`: its bind host, `allowed_hosts` and `cors_origins`."""
    return HostPolicy(config.host, config.allowed_hosts, config.cors_origins)


def guard_hosts(app: Starlette, config: ServerConfig) -> None:
    """Put the guard outermost on the app `llmserve serve` runs (in-process test apps, reached
    through ASGI transports under made-up host names, go without it)."""
    app.add_middleware(HostGuardMiddleware, policy=host_policy(config))


class HostGuardMiddleware:
    """400 for a foreign `Host`, 403 for a foreign `Origin`; CORS headers for listed origins."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        origin = headers.get("origin")
        if origin is None or not self.policy.origin_listed(origin):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _preflight(origin, headers)(scope, receive, send)
            return
        await self.app(scope, receive, _with_cors(send, origin))

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        host = headers.get("host")
        if not self.policy.host_allowed(host):
            return error_response(
                InvalidRequestError(
                    f"Host {host!r} is not this server's address. Add it to `allowed_hosts` in "
                    "the config to serve it.",
                    code="invalid_host",
                )
            )
        origin = headers.get("origin")
        if origin is None or _same_origin(scope, origin, host):
            return None
        if self.policy.origin_listed(origin):
            return None
        return error_response(
            PermissionDeniedError(
                f"Requests from web pages of {origin!r} are not allowed. Add the origin to "
                "`cors_origins` in the config to allow them.",
                code="origin_not_allowed",
            )
        )


def _same_origin(scope: Scope, origin: str, host: str | None) -> bool:
    """True for the server's own pages (the playground, the admin console)."""
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


def _preflight(origin: str, headers: Headers) -> Response:
    allow = {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
        "access-control-allow-headers": headers.get("access-control-request-headers", "*"),
        "access-control-max-age": "600",
        "vary": "Origin",
    }
    return Response(status_code=204, headers=allow)


def _with_cors(send: Send, origin: str) -> Send:
    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["access-control-allow-origin"] = origin
            headers.append("vary", "Origin")
        await send(message)

    return send_with_cors

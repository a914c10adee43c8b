"""Who may reach the server: the bind policy for `serve` and the bounded waiting queue."""

from __future__ import annotations

import ipaddress


class BindPolicyError(ValueError):
    """`serve` was asked to listen beyond loopback with no API keys and without --no-auth."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public address


def check_bind_policy(host: str, has_keys: bool, no_auth: bool) -> None:
    """Refuse to serve an open endpoint beyond this machine unless the operator said so."""
    if has_keys or no_auth or is_loopback(host):
        return
    raise BindPolicyError(
        f"refusing to listen on {host} with no API keys: anyone who can reach it could use it. "
        "Create a key first (llmserve keys create --name NAME), or pass --no-auth to serve "
        "without authentication."
    )

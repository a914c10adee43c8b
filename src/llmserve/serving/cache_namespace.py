"""Prefix-cache namespaces: whose cached blocks a request may reuse.

A namespace is a string the engine hashes into the start of a prompt's block-hash chain
(engine/block_manager.py), so two requests share cached blocks only when their namespaces are
equal. The caller's base namespace comes from its key (`Principal.cache_namespace`):
`key:<key id>` by default, `group:<cache group>` for keys made with one, `anonymous` for every
caller of an open server. A request's `cache_salt` adds `|salt:<salt>` to it: a separate
namespace inside the caller's, which other salts (and no salt) never read.
"""

from __future__ import annotations

from typing import Literal

NamespaceKind = Literal["key", "group", "salt", "anonymous"]
NAMESPACE_KINDS: tuple[NamespaceKind, ...] = ("key", "group", "salt", "anonymous")
ANONYMOUS_NAMESPACE = "anonymous"
SALT_SEPARATOR = "|salt:"


def key_namespace(key_id: str, cache_group: str | None) -> str:
    """The base namespace of a key: its cache group's when it has one, else its own."""
    return f"group:{cache_group}" if cache_group else f"key:{key_id}"


def salted(namespace: str, cache_salt: str | None) -> str:
    """`namespace`, or the one `cache_salt` starts inside it."""
    return namespace if cache_salt is None else f"{namespace}{SALT_SEPARATOR}{cache_salt}"


def namespace_kind(namespace: str) -> NamespaceKind:
    """What made `namespace` (a metrics label: never the key, group, salt or prompt itself)."""
    if SALT_SEPARATOR in namespace:
        return "salt"
    if namespace.startswith("group:"):
        return "group"
    if namespace.startswith("key:"):
        return "key"
    return "anonymous"

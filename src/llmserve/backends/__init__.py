"""Backends: where a validated request is turned into tokens or vectors."""

"""llmserve: a self-hosted, multi-tenant, OpenAI-compatible LLM endpoint."""

from __future__ import annotations

__version__ = "0.1.0"

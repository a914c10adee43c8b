"""The OpenAI-compatible HTTP layer: app factory, schemas, routes, SSE framing, error mapping."""
